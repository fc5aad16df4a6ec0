// Shared-prefix candidates on the CPU: one unmasked call per group (or bucket of groups) over the
// prefix keys read in place, causal calls over the candidates' own keys, merged by log-sum-exp:
// out = out_p * exp(lse_p - lse) + out_o * exp(lse_o - lse), lse = logaddexp(lse_p, lse_o).
// The backward of each call is the kernel's backward given the merged out and lse (its softmax
// weights are then those of the whole row); a group's prefix gradient is summed over all its
// candidates' queries inside its one call. Padding query slots read a real query row and get a
// zero output gradient, so their gradients are exactly zero; padding keys (own chunks only)
// follow a real query's own keys, beyond its causal limit.
#include "prefix_groups.h"

#include <ATen/ops/_scaled_dot_product_flash_attention_for_cpu.h>
#include <ATen/ops/_scaled_dot_product_flash_attention_for_cpu_backward.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <tuple>

namespace polar::kernels {

using torch::Tensor;

std::vector<CausalChunk> make_causal_chunks(std::vector<BlockSpan> spans, int64_t call_cost) {
  std::sort(spans.begin(), spans.end(),
            [](const BlockSpan& a, const BlockSpan& b) { return a.q_len < b.q_len; });
  std::vector<CausalChunk> chunks;
  for (const BlockSpan& s : spans) {
    if (!chunks.empty()) {
      CausalChunk& c = chunks.back();
      const auto n = static_cast<int64_t>(c.spans.size());
      const int64_t lq = std::max(c.lq, s.q_len);
      if ((n + 1) * lq * lq <= n * c.lq * c.lq + call_cost + s.q_len * s.q_len) {
        c.spans.push_back(s);
        c.lq = lq;
        continue;
      }
    }
    chunks.push_back(CausalChunk{{s}, s.q_len});
  }
  return chunks;
}

namespace {

Tensor index_tensor(const std::vector<int64_t>& v, torch::Device device) {
  return torch::tensor(torch::ArrayRef<int64_t>(v), torch::kInt64).to(device);
}

bool consecutive(const std::vector<int64_t>& rows) {
  for (size_t i = 1; i < rows.size(); ++i)
    if (rows[i] != rows[0] + static_cast<int64_t>(i)) return false;
  return true;
}

// A group: the rows of k holding its prefix and its candidates' query rows, in order.
struct Group {
  std::vector<int64_t> prefix_rows, q_rows;
};

// Fills the own chunks' slots; returns the candidates' groups (by their prefix rows).
std::vector<Group> plan_own_slots(PrefixGroupsPlan& p, const std::vector<BlockSpan>& candidates,
                                  const std::vector<int64_t>& key_index, int64_t call_cost,
                                  std::vector<int64_t>& own_q_rows, std::vector<int64_t>& own_k) {
  const auto key_row = [&](int64_t slot) {
    return key_index.empty() ? slot : key_index[static_cast<size_t>(slot)];
  };
  std::map<std::vector<int64_t>, size_t> group_of;
  std::vector<Group> groups;
  std::vector<BlockSpan> own;  // each candidate's queries over its own keys
  for (const BlockSpan& s : candidates) {
    const int64_t prefix = s.k_len - s.q_len;
    std::vector<int64_t> rows(static_cast<size_t>(prefix));
    for (int64_t j = 0; j < prefix; ++j) rows[static_cast<size_t>(j)] = key_row(s.k_begin + j);
    const auto found = group_of.emplace(rows, groups.size());
    if (found.second) groups.push_back(Group{std::move(rows), {}});
    auto& q_rows = groups[found.first->second].q_rows;
    for (int64_t i = 0; i < s.q_len; ++i) q_rows.push_back(s.q_begin + i);
    own.push_back(BlockSpan{s.q_begin, s.q_len, s.k_begin + prefix, s.q_len});
  }
  p.own = make_causal_chunks(std::move(own), call_cost);
  for (const CausalChunk& c : p.own) {
    for (const BlockSpan& s : c.spans) {
      for (int64_t i = 0; i < c.lq; ++i) {
        const int64_t at = i < s.q_len ? i : 0;
        if (i < s.q_len) p.own_slot[static_cast<size_t>(s.q_begin + i)] = p.own_slots;
        own_q_rows.push_back(s.q_begin + at);
        own_k.push_back(key_row(s.k_begin + at));
        ++p.own_slots;
      }
    }
    p.own_sizes.push_back(static_cast<int64_t>(c.spans.size()) * c.lq);
  }
  return groups;
}

// Buckets the groups (one prefix length per bucket, joined while the padding costs less than a
// call) and fills the prefix slots' query rows.
void plan_buckets(PrefixGroupsPlan& p, std::vector<Group> groups, int64_t call_cost,
                  torch::Device device, std::vector<int64_t>& prefix_q_rows,
                  std::vector<bool>& prefix_real) {
  std::sort(groups.begin(), groups.end(), [](const Group& a, const Group& b) {
    if (a.prefix_rows.size() != b.prefix_rows.size())
      return a.prefix_rows.size() < b.prefix_rows.size();
    return a.q_rows.size() < b.q_rows.size();
  });
  std::vector<std::vector<const Group*>> members;
  for (const Group& g : groups) {
    const auto prefix = static_cast<int64_t>(g.prefix_rows.size());
    const auto queries = static_cast<int64_t>(g.q_rows.size());
    if (!p.buckets.empty() && p.buckets.back().prefix == prefix) {
      PrefixBucket& b = p.buckets.back();
      const int64_t joined = (b.groups + 1) * std::max(b.queries, queries) * prefix;
      if (joined <= (b.groups * b.queries + queries) * prefix + call_cost) {
        b.queries = std::max(b.queries, queries);
        ++b.groups;
        members.back().push_back(&g);
        continue;
      }
    }
    PrefixBucket alone;
    alone.groups = 1;
    alone.queries = queries;
    alone.prefix = prefix;
    p.buckets.push_back(alone);
    members.push_back({&g});
  }
  for (size_t i = 0; i < p.buckets.size(); ++i) {
    PrefixBucket& b = p.buckets[i];
    std::vector<int64_t> q_rows, k_rows;
    for (const Group* g : members[i]) {
      for (int64_t j = 0; j < b.queries; ++j) {
        const bool real = j < static_cast<int64_t>(g->q_rows.size());
        q_rows.push_back(g->q_rows[static_cast<size_t>(real ? j : 0)]);
        prefix_real.push_back(real);
      }
      k_rows.insert(k_rows.end(), g->prefix_rows.begin(), g->prefix_rows.end());
    }
    prefix_q_rows.insert(prefix_q_rows.end(), q_rows.begin(), q_rows.end());
    if (b.groups == 1 && consecutive(q_rows) && consecutive(k_rows)) {
      b.q_begin = q_rows[0];
      b.k_begin = k_rows[0];
    } else {
      b.q_index = index_tensor(q_rows, device);
      b.k_index = index_tensor(k_rows, device);
    }
    p.prefix_slots += b.groups * b.queries;
  }
}

}  // namespace

c10::intrusive_ptr<PrefixGroupsPlan> plan_prefix_groups(const std::vector<BlockSpan>& candidates,
                                                        const std::vector<int64_t>& key_index,
                                                        int64_t n_q, int64_t call_cost,
                                                        torch::Device device) {
  auto p = c10::make_intrusive<PrefixGroupsPlan>();
  p->own_slot.assign(static_cast<size_t>(n_q), -1);
  std::vector<int64_t> own_q_rows, own_k, prefix_q_rows;
  std::vector<bool> prefix_real;
  std::vector<Group> groups =
      plan_own_slots(*p, candidates, key_index, call_cost, own_q_rows, own_k);
  plan_buckets(*p, std::move(groups), call_cost, device, prefix_q_rows, prefix_real);
  std::vector<int64_t> prefix_slot(static_cast<size_t>(n_q), -1);
  std::vector<int64_t> source, padding;
  for (size_t s = 0; s < prefix_q_rows.size(); ++s) {
    const auto row = static_cast<size_t>(prefix_q_rows[s]);
    if (prefix_real[s]) prefix_slot[row] = static_cast<int64_t>(s);
    if (!prefix_real[s]) padding.push_back(static_cast<int64_t>(s));
    source.push_back(p->own_slot[row]);
  }
  std::vector<int64_t> from_prefix;  // a padding own slot reads a real row: that row's slot
  for (int64_t row : own_q_rows) from_prefix.push_back(prefix_slot[static_cast<size_t>(row)]);
  p->own_q_index = index_tensor(own_q_rows, device);
  p->own_k_index = index_tensor(own_k, device);
  p->own_from_prefix = index_tensor(from_prefix, device);
  p->prefix_source = index_tensor(source, device);
  p->prefix_padding = index_tensor(padding, device);
  return p;
}

namespace {

// (n * len, H, D) -> (n, H, len, D) and back; a log-sum-exp (n, H, len) -> (n * len, H) and back.
Tensor heads_first(const Tensor& x, int64_t n, int64_t len) {
  return x.view({n, len, x.size(1), x.size(2)}).transpose(1, 2);
}
Tensor tokens_first(const Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0) * x.size(2), x.size(1), x.size(3)});
}
Tensor lse_heads_first(const Tensor& x, int64_t n, int64_t len) {
  return x.view({n, len, x.size(1)}).transpose(1, 2);
}
Tensor lse_tokens_first(const Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0) * x.size(2), x.size(1)});
}

// A bucket's rows of x: in place, or gathered.
Tensor bucket_rows(const Tensor& x, int64_t begin, int64_t count, const Tensor& index) {
  return begin >= 0 ? x.narrow(0, begin, count) : x.index_select(0, index);
}
void add_bucket_rows(Tensor& into, int64_t begin, const Tensor& index, const Tensor& rows) {
  if (begin >= 0) {
    into.narrow(0, begin, rows.size(0)).add_(rows);
  } else {
    into.index_add_(0, index, rows);
  }
}

using Parts = std::tuple<Tensor, Tensor>;  // out (slots, Hq, D), lse (slots, Hq)

Parts own_forward(const Tensor& q, const Tensor& k, const Tensor& v, const PrefixGroupsPlan& p) {
  const auto qs = q.index_select(0, p.own_q_index).split_with_sizes(p.own_sizes, 0);
  const auto ks = k.index_select(0, p.own_k_index).split_with_sizes(p.own_sizes, 0);
  const auto vs = v.index_select(0, p.own_k_index).split_with_sizes(p.own_sizes, 0);
  std::vector<Tensor> outs, lses;
  for (size_t i = 0; i < p.own.size(); ++i) {
    const auto n = static_cast<int64_t>(p.own[i].spans.size());
    const int64_t lq = p.own[i].lq;
    const auto [o, l] = at::_scaled_dot_product_flash_attention_for_cpu(
        heads_first(qs[i], n, lq), heads_first(ks[i], n, lq), heads_first(vs[i], n, lq), 0.0,
        /*is_causal=*/true);
    outs.push_back(tokens_first(o));
    lses.push_back(lse_tokens_first(l));
  }
  return {torch::cat(outs, 0), torch::cat(lses, 0)};
}

Parts prefix_forward(const Tensor& q, const Tensor& k, const Tensor& v, const PrefixGroupsPlan& p) {
  std::vector<Tensor> outs, lses;
  for (const PrefixBucket& b : p.buckets) {
    const int64_t nq = b.groups * b.queries, nk = b.groups * b.prefix;
    const auto [o, l] = at::_scaled_dot_product_flash_attention_for_cpu(
        heads_first(bucket_rows(q, b.q_begin, nq, b.q_index), b.groups, b.queries),
        heads_first(bucket_rows(k, b.k_begin, nk, b.k_index), b.groups, b.prefix),
        heads_first(bucket_rows(v, b.k_begin, nk, b.k_index), b.groups, b.prefix), 0.0,
        /*is_causal=*/false);
    outs.push_back(tokens_first(o));
    lses.push_back(lse_tokens_first(l));
  }
  return {torch::cat(outs, 0), torch::cat(lses, 0)};
}

// Adds the own calls' gradients given the merged out and lse (all in own slots).
void own_backward(const Tensor& grad, const Tensor& q, const Tensor& k, const Tensor& v,
                  const Tensor& out, const Tensor& lse, const PrefixGroupsPlan& p, Tensor& dq,
                  Tensor& dk, Tensor& dv) {
  const auto qs = q.index_select(0, p.own_q_index).split_with_sizes(p.own_sizes, 0);
  const auto ks = k.index_select(0, p.own_k_index).split_with_sizes(p.own_sizes, 0);
  const auto vs = v.index_select(0, p.own_k_index).split_with_sizes(p.own_sizes, 0);
  const auto gs = grad.split_with_sizes(p.own_sizes, 0);
  const auto os = out.split_with_sizes(p.own_sizes, 0);
  const auto ls = lse.split_with_sizes(p.own_sizes, 0);
  std::vector<Tensor> dqs, dks, dvs;
  for (size_t i = 0; i < p.own.size(); ++i) {
    const auto n = static_cast<int64_t>(p.own[i].spans.size());
    const int64_t lq = p.own[i].lq;
    const auto [gq, gk, gv] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
        heads_first(gs[i], n, lq), heads_first(qs[i], n, lq), heads_first(ks[i], n, lq),
        heads_first(vs[i], n, lq), heads_first(os[i], n, lq), lse_heads_first(ls[i], n, lq), 0.0,
        /*is_causal=*/true);
    dqs.push_back(tokens_first(gq));
    dks.push_back(tokens_first(gk));
    dvs.push_back(tokens_first(gv));
  }
  dq.index_add_(0, p.own_q_index, torch::cat(dqs, 0));
  dk.index_add_(0, p.own_k_index, torch::cat(dks, 0));
  dv.index_add_(0, p.own_k_index, torch::cat(dvs, 0));
}

// Adds the prefix calls' gradients; grad, out and lse are in own slots.
void prefix_backward(const Tensor& grad, const Tensor& q, const Tensor& k, const Tensor& v,
                     const Tensor& out, const Tensor& lse, const PrefixGroupsPlan& p, Tensor& dq,
                     Tensor& dk, Tensor& dv) {
  Tensor g = grad.index_select(0, p.prefix_source);
  if (p.prefix_padding.numel() > 0) g.index_fill_(0, p.prefix_padding, 0);
  const Tensor o = out.index_select(0, p.prefix_source), l = lse.index_select(0, p.prefix_source);
  int64_t slot = 0;
  for (const PrefixBucket& b : p.buckets) {
    const int64_t nq = b.groups * b.queries, nk = b.groups * b.prefix;
    const auto [gq, gk, gv] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
        heads_first(g.narrow(0, slot, nq), b.groups, b.queries),
        heads_first(bucket_rows(q, b.q_begin, nq, b.q_index), b.groups, b.queries),
        heads_first(bucket_rows(k, b.k_begin, nk, b.k_index), b.groups, b.prefix),
        heads_first(bucket_rows(v, b.k_begin, nk, b.k_index), b.groups, b.prefix),
        heads_first(o.narrow(0, slot, nq), b.groups, b.queries),
        lse_heads_first(l.narrow(0, slot, nq), b.groups, b.queries), 0.0, /*is_causal=*/false);
    add_bucket_rows(dq, b.q_begin, b.q_index, tokens_first(gq));
    add_bucket_rows(dk, b.k_begin, b.k_index, tokens_first(gk));
    add_bucket_rows(dv, b.k_begin, b.k_index, tokens_first(gv));
    slot += nq;
  }
}

struct PrefixGroupsFunction : torch::autograd::Function<PrefixGroupsFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q, const Tensor& k,
                        const Tensor& v, const c10::intrusive_ptr<PrefixGroupsPlan>& plan) {
    const auto [out_o, lse_o] = own_forward(q, k, v, *plan);
    const auto [prefix_out, prefix_lse] = prefix_forward(q, k, v, *plan);
    const Tensor out_p = prefix_out.index_select(0, plan->own_from_prefix);
    const Tensor lse_p = prefix_lse.index_select(0, plan->own_from_prefix);
    const Tensor lse = torch::logaddexp(lse_p, lse_o);  // (own slots, Hq)
    const auto weight = [&](const Tensor& part) {
      return (part - lse).exp().unsqueeze(-1).to(q.scalar_type());
    };
    const Tensor out = out_p * weight(lse_p) + out_o * weight(lse_o);
    ctx->save_for_backward({q, k, v, out, lse});
    ctx->saved_data["plan"] = c10::IValue::make_capsule(plan);
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto holder = ctx->saved_data["plan"].toCapsule();
    const auto* plan = static_cast<const PrefixGroupsPlan*>(holder.get());
    const Tensor grad = grads[0].contiguous();
    Tensor dq = torch::zeros_like(s[0]), dk = torch::zeros_like(s[1]), dv = torch::zeros_like(s[2]);
    own_backward(grad, s[0], s[1], s[2], s[3], s[4], *plan, dq, dk, dv);
    prefix_backward(grad, s[0], s[1], s[2], s[3], s[4], *plan, dq, dk, dv);
    return {dq, dk, dv, Tensor()};
  }
};

}  // namespace

Tensor prefix_group_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                              const c10::intrusive_ptr<PrefixGroupsPlan>& plan) {
  return PrefixGroupsFunction::apply(q, k, v, plan);
}

}  // namespace polar::kernels
