// Block causal attention through ATen's fused attention kernels: blocks of similar lengths are
// padded into one batch, so a packed batch costs a few calls per layer instead of a dozen small
// ops per block. The padding is bounded by a cost model (padded work vs the per-call overhead it
// saves). Whole sequences run in the kernel's causal mode (no mask; it skips the upper triangle).
// A candidate over a prefix runs as two calls merged exactly by their log-sum-exps: all its
// queries against the prefix's keys (masked only where prefixes of different lengths are padded)
// and causally against its own keys (no mask); its backward is the kernel's backward of each
// part given the merged output and log-sum-exp.
#include <ATen/ops/_scaled_dot_product_flash_attention_for_cpu.h>
#include <ATen/ops/_scaled_dot_product_flash_attention_for_cpu_backward.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <optional>
#include <vector>

#include "block_spans.h"
#include "polar/kernels/attention.h"

namespace polar::kernels {

using torch::Tensor;

namespace {

using Span = BlockSpan;

// Blocks padded to one (lq, lk). Plain (queries == keys): one causal call, exact with padding
// (a real query's keys are all real; padding keys come after it). Candidates: keys are
// [prefix (the longest prefix of the chunk, padded) ; own (lq, padded)], lk = prefix + lq.
struct Chunk {
  std::vector<Span> spans;
  int64_t lq = 0, lk = 0;
  bool plain = false;
  int64_t prefix = 0;
  bool ragged = false;  // prefixes of different lengths: the prefix call needs a key mask
};

// Everything a batch's attention needs besides q, k and v; the same for every layer.
struct Plan {
  std::vector<int64_t> cu_q, cu_k;  // the key it was built for
  torch::ScalarType dtype = torch::kFloat;
  torch::Device device = torch::kCPU;
  std::vector<Chunk> chunks;
  Tensor q_index, k_index;                // padded slot -> row of q / of k, chunk after chunk
  Tensor out_index;                       // query row (token order) -> padded output slot
  std::vector<int64_t> q_sizes, k_sizes;  // slots per chunk (keys: 1 part if plain, else 2)
  std::vector<Tensor> prefix_masks;       // per chunk (n, 1, lq, prefix) additive if ragged
};

// Groups blocks into chunks: plain sequences first, then candidates by prefix length, each by
// length; a block joins the current chunk of its kind while the padded work grown by it costs
// less than one more call. call_cost is a call's overhead in query-key scores.
std::vector<Chunk> make_chunks(std::vector<Span> spans, int64_t call_cost) {
  const auto prefix_of = [](const Span& s) { return s.k_len - s.q_len; };
  std::sort(spans.begin(), spans.end(), [&](const Span& a, const Span& b) {
    if (prefix_of(a) != prefix_of(b)) return prefix_of(a) < prefix_of(b);  // plain ones first
    return a.q_len < b.q_len;
  });
  std::vector<Chunk> chunks;
  for (const Span& s : spans) {
    const int64_t prefix = prefix_of(s);
    const bool plain = prefix == 0;
    if (!chunks.empty() && chunks.back().plain == plain) {
      Chunk& c = chunks.back();
      const auto n = static_cast<int64_t>(c.spans.size());
      const int64_t lq = std::max(c.lq, s.q_len), pre = std::max(c.prefix, prefix);
      const int64_t joined = (n + 1) * lq * (pre + lq);
      const int64_t apart = n * c.lq * c.lk + call_cost + s.q_len * s.k_len;
      if (joined <= apart) {
        c.spans.push_back(s);
        c.ragged = c.ragged || prefix != c.prefix;
        c.lq = lq;
        c.prefix = pre;
        c.lk = pre + lq;
        continue;
      }
    }
    chunks.push_back(Chunk{{s}, s.q_len, s.k_len, plain, prefix, false});
  }
  return chunks;
}

// Padding slots read a real row of their block (its first). A padding query sees real or
// padding keys (finite), its output is dropped, so its gradient is zero; a real query never
// sees a padding key (they follow its own keys, beyond the causal limit).
void build_indices(Plan& p, int64_t n_q) {
  std::vector<int64_t> q_index, k_index, out_index(static_cast<size_t>(n_q), -1);
  int64_t slot = 0;
  for (const Chunk& c : p.chunks) {
    const auto n = static_cast<int64_t>(c.spans.size());
    for (int64_t b = 0; b < n; ++b) {
      const Span& s = c.spans[static_cast<size_t>(b)];
      for (int64_t i = 0; i < c.lq; ++i) {
        q_index.push_back(s.q_begin + (i < s.q_len ? i : 0));
        if (i < s.q_len) out_index[static_cast<size_t>(s.q_begin + i)] = slot + b * c.lq + i;
      }
    }
    std::vector<float> mask;  // the prefix call's key mask: padding keys of a shorter prefix
    if (c.ragged) mask.assign(static_cast<size_t>(n * c.prefix), 0.0f);
    for (int64_t b = 0; b < n; ++b) {  // the prefix part (a plain chunk's keys are all "own")
      const Span& s = c.spans[static_cast<size_t>(b)];
      const int64_t own_prefix = s.k_len - s.q_len;
      for (int64_t j = 0; j < c.prefix; ++j) {
        k_index.push_back(s.k_begin + (j < own_prefix ? j : 0));
        if (c.ragged && j >= own_prefix) mask[static_cast<size_t>(b * c.prefix + j)] = -INFINITY;
      }
    }
    for (const Span& s : c.spans) {
      const int64_t own_prefix = s.k_len - s.q_len;
      for (int64_t j = 0; j < c.lq; ++j)
        k_index.push_back(s.k_begin + own_prefix + (j < s.q_len ? j : 0));
    }
    p.prefix_masks.push_back(c.ragged
                                 ? torch::from_blob(mask.data(), {n, 1, 1, c.prefix}, torch::kFloat)
                                       .to(p.device, p.dtype, false, /*copy=*/true)
                                       .expand({n, 1, c.lq, c.prefix})
                                 : Tensor());
    p.q_sizes.push_back(n * c.lq);
    if (!c.plain) p.k_sizes.push_back(n * c.prefix);
    p.k_sizes.push_back(n * c.lq);
    slot += n * c.lq;
  }
  const auto as_tensor = [&](std::vector<int64_t>& v) {
    return torch::from_blob(v.data(), {static_cast<int64_t>(v.size())}, torch::kInt64)
        .to(p.device, torch::kInt64, false, /*copy=*/true);
  };
  p.q_index = as_tensor(q_index);
  p.k_index = as_tensor(k_index);
  p.out_index = as_tensor(out_index);
}

// The plan of the last batch is kept: every layer of a forward (and the next forward of an
// evaluation over the same batch) reuses it. Keyed by the block boundaries themselves.
std::shared_ptr<const Plan> plan_for(const Tensor& q, const Tensor& k, const Tensor& cu_q,
                                     const Tensor& cu_k) {
  static std::mutex mutex;
  static std::shared_ptr<const Plan> last;
  std::vector<int64_t> qv = cu_seqlens_values(cu_q), kv = cu_seqlens_values(cu_k);
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (last && last->cu_q == qv && last->cu_k == kv && last->dtype == q.scalar_type() &&
        last->device == q.device()) {
      return last;
    }
  }
  auto p = std::make_shared<Plan>();
  p->dtype = q.scalar_type();
  p->device = q.device();
  // A call costs about as much as this many query-key scores (2 MFLOP of 4 * D * Hq each).
  const int64_t call_cost = std::max<int64_t>(64, 2'000'000 / (4 * q.size(2) * q.size(1)));
  p->chunks = make_chunks(read_block_spans("varlen_attention_padded", qv, kv, q.size(0), k.size(0)),
                          call_cost);
  build_indices(*p, q.size(0));
  p->cu_q = std::move(qv);
  p->cu_k = std::move(kv);
  std::lock_guard<std::mutex> lock(mutex);
  last = p;
  return last;
}

// No mask travels as an empty tensor (an autograd Function takes no undefined inputs).
std::optional<Tensor> optional_mask(const Tensor& mask) {
  return mask.defined() && mask.numel() > 0 ? std::optional<Tensor>(mask) : std::nullopt;
}

// Attention of queries over [prefix keys ; own keys], causal over the own keys (bottom-right
// aligned), as two calls of the fused CPU kernel merged by log-sum-exp (the prefix call takes
// prefix_mask, additive (n, 1, lq, prefix), where prefixes are padded):
// out = out_p * exp(lse_p - lse) + out_o * exp(lse_o - lse), lse = logaddexp(lse_p, lse_o).
// The backward of each part is the kernel's backward given the merged out and lse (its softmax
// weights are then those of the whole row), and dq is their sum.
struct PrefixCandidate : torch::autograd::Function<PrefixCandidate> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q,
                        const Tensor& k_prefix, const Tensor& v_prefix, const Tensor& k_own,
                        const Tensor& v_own, const Tensor& prefix_mask) {
    const auto [out_p, lse_p] = at::_scaled_dot_product_flash_attention_for_cpu(
        q, k_prefix, v_prefix, 0.0, false, optional_mask(prefix_mask));
    const auto [out_o, lse_o] =
        at::_scaled_dot_product_flash_attention_for_cpu(q, k_own, v_own, 0.0, true);
    const Tensor lse = torch::logaddexp(lse_p, lse_o);  // (n, H, lq)
    const Tensor out = (out_p * (lse_p - lse).exp().unsqueeze(-1).to(out_p.scalar_type()) +
                        out_o * (lse_o - lse).exp().unsqueeze(-1).to(out_o.scalar_type()))
                           .contiguous();
    ctx->save_for_backward({q, k_prefix, v_prefix, k_own, v_own, out, lse});
    ctx->saved_data["mask"] = prefix_mask;
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const Tensor grad = grads[0].contiguous();
    const auto [dq_p, dk_p, dv_p] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
        grad, s[0], s[1], s[2], s[5], s[6], 0.0, false,
        optional_mask(ctx->saved_data["mask"].toTensor()));
    const auto [dq_o, dk_o, dv_o] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
        grad, s[0], s[3], s[4], s[5], s[6], 0.0, true);
    return {dq_p + dq_o, dk_p, dv_p, dk_o, dv_o, Tensor()};
  }
};

// q (n, Hq, lq, D), prefix keys (n, Hkv, prefix, D), own keys (n, Hkv, lq, D) -> (n, Hq, lq, D).
Tensor prefix_candidate_attention(const Tensor& q, const Tensor& k_prefix, const Tensor& v_prefix,
                                  const Tensor& k_own, const Tensor& v_own,
                                  const Tensor& prefix_mask) {
  if (q.device().is_cpu()) {
    return PrefixCandidate::apply(q, k_prefix, v_prefix, k_own, v_own,
                                  prefix_mask.defined() ? prefix_mask : torch::empty({0}));
  }
  // Elsewhere: one masked call over the concatenated keys (the kernel above is the CPU's).
  const int64_t n = q.size(0), lq = q.size(2), prefix = k_prefix.size(2);
  const auto opts = torch::TensorOptions().dtype(torch::kInt64).device(q.device());
  const Tensor own =
      torch::zeros({lq, lq}, q.options())
          .masked_fill(torch::arange(lq, opts).unsqueeze(0) > torch::arange(lq, opts).unsqueeze(1),
                       -INFINITY);  // (lq, lq)
  const Tensor pre =
      prefix_mask.defined() ? prefix_mask : torch::zeros({n, 1, lq, prefix}, q.options());
  const Tensor mask = torch::cat({pre, own.expand({n, 1, lq, lq})}, -1);  // (n, 1, lq, prefix + lq)
  return torch::scaled_dot_product_attention(
      q, torch::cat({k_prefix, k_own}, 2), torch::cat({v_prefix, v_own}, 2), mask, 0.0, false,
      std::nullopt, /*enable_gqa=*/q.size(1) != k_own.size(1));
}

}  // namespace

Tensor varlen_attention_padded(const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& cu_seqlens_q, const Tensor& cu_seqlens_k) {
  check_block_attention_inputs("varlen_attention_padded", q, k, v);
  const auto plan = plan_for(q, k, cu_seqlens_q, cu_seqlens_k);
  if (plan->chunks.empty()) return q * 0;  // no block has queries (keeps q in the graph)
  const int64_t hq = q.size(1), hkv = k.size(1), d = q.size(2);
  // Split (not narrowed): the backward of a split is one concatenation of the chunks'
  // gradients, where narrowing would add a zero-filled tensor of the whole size per chunk.
  const auto qs = q.index_select(0, plan->q_index).split_with_sizes(plan->q_sizes, 0);
  const auto ks = k.index_select(0, plan->k_index).split_with_sizes(plan->k_sizes, 0);
  const auto vs = v.index_select(0, plan->k_index).split_with_sizes(plan->k_sizes, 0);
  std::vector<Tensor> outs;
  size_t key_part = 0;
  for (size_t i = 0; i < plan->chunks.size(); ++i) {
    const Chunk& c = plan->chunks[i];
    const auto n = static_cast<int64_t>(c.spans.size());
    const auto heads_first = [&](const Tensor& x, int64_t len, int64_t heads) {
      return x.view({n, len, heads, d}).transpose(1, 2);  // (n, heads, len, D)
    };
    const Tensor qc = heads_first(qs[i], c.lq, hq);
    Tensor o;  // (n, Hq, lq, D)
    if (c.plain) {
      o = torch::scaled_dot_product_attention(
          qc, heads_first(ks[key_part], c.lq, hkv), heads_first(vs[key_part], c.lq, hkv), {},
          /*dropout_p=*/0.0, /*is_causal=*/true, /*scale=*/std::nullopt, /*enable_gqa=*/hq != hkv);
      key_part += 1;
    } else {
      o = prefix_candidate_attention(
          qc, heads_first(ks[key_part], c.prefix, hkv), heads_first(vs[key_part], c.prefix, hkv),
          heads_first(ks[key_part + 1], c.lq, hkv), heads_first(vs[key_part + 1], c.lq, hkv),
          plan->prefix_masks[i]);
      key_part += 2;
    }
    outs.push_back(o.transpose(1, 2).reshape({n * c.lq, hq, d}));
  }
  const Tensor all = outs.size() == 1 ? outs[0] : torch::cat(outs, 0);
  return all.index_select(0, plan->out_index);  // (Nq, Hq, D)
}

}  // namespace polar::kernels
