// Block causal attention through ATen's fused attention kernels: blocks of similar lengths are
// padded into one batch, so a packed batch costs a few calls per layer instead of a dozen small
// ops per block. The padding is bounded by a cost model (padded work vs the per-call overhead it
// saves). Whole sequences run in the kernel's causal mode (no mask; it skips the upper triangle).
// Shared-prefix candidates run as prefix_groups.h describes: one unmasked call per group over its
// prefix keys read in place, causal calls over their own keys, merged by log-sum-exp.
#include <torch/torch.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "block_spans.h"
#include "polar/common/error.h"
#include "polar/kernels/attention.h"
#include "prefix_groups.h"

namespace polar::kernels {

using torch::Tensor;

namespace {

using Span = BlockSpan;

// Everything a batch's attention needs besides q, k and v; the same for every layer.
struct Plan {
  std::vector<int64_t> cu_q, cu_k, key_index;  // the key it was built for
  torch::ScalarType dtype = torch::kFloat;
  torch::Device device = torch::kCPU;
  std::vector<CausalChunk> chunks;              // whole sequences (and prefixes), padded
  Tensor q_index, k_index;                      // their padded slots -> row of q / of k
  std::vector<int64_t> sizes;                   // slots per chunk
  c10::intrusive_ptr<PrefixGroupsPlan> groups;  // the candidates; null when there are none
  Tensor out_index;  // query row -> output slot ([whole sequences' slots ; candidates' own slots])
};

// Padding slots read a real row of their block (its first). A padding query sees real or
// padding keys (finite), its output is dropped, so its gradient is zero; a real query never
// sees a padding key (they follow its own keys, beyond the causal limit).
void build_indices(Plan& p, const std::vector<int64_t>& key_index, int64_t n_q) {
  const auto key_row = [&](int64_t slot) {
    return key_index.empty() ? slot : key_index[static_cast<size_t>(slot)];
  };
  std::vector<int64_t> q_index, k_index, out_index(static_cast<size_t>(n_q), -1);
  for (const CausalChunk& c : p.chunks) {
    for (const Span& s : c.spans) {
      for (int64_t i = 0; i < c.lq; ++i) {
        const int64_t at = i < s.q_len ? i : 0;
        if (i < s.q_len)
          out_index[static_cast<size_t>(s.q_begin + i)] = static_cast<int64_t>(q_index.size());
        q_index.push_back(s.q_begin + at);
        k_index.push_back(key_row(s.k_begin + at));
      }
    }
    p.sizes.push_back(static_cast<int64_t>(c.spans.size()) * c.lq);
  }
  const auto plain_slots = static_cast<int64_t>(q_index.size());
  for (size_t row = 0; p.groups && row < out_index.size(); ++row)
    if (p.groups->own_slot[row] >= 0) out_index[row] = plain_slots + p.groups->own_slot[row];
  const auto as_tensor = [&](const std::vector<int64_t>& v) {
    return torch::tensor(torch::ArrayRef<int64_t>(v), torch::kInt64).to(p.device);
  };
  p.q_index = as_tensor(q_index);
  p.k_index = as_tensor(k_index);
  p.out_index = as_tensor(out_index);
}

// The plan of the last batch is kept: every layer of a forward (and the next forward of an
// evaluation over the same batch) reuses it. Keyed by the block boundaries and key rows.
std::shared_ptr<const Plan> plan_for(const Tensor& q, const Tensor& k, const Tensor& cu_q,
                                     const Tensor& cu_k, const Tensor& key_index) {
  static std::mutex mutex;
  static std::shared_ptr<const Plan> last;
  std::vector<int64_t> qv = cu_seqlens_values(cu_q), kv = cu_seqlens_values(cu_k);
  std::vector<int64_t> keys =
      key_index.defined() ? cu_seqlens_values(key_index) : std::vector<int64_t>();
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (last && last->cu_q == qv && last->cu_k == kv && last->key_index == keys &&
        last->dtype == q.scalar_type() && last->device == q.device()) {
      return last;
    }
  }
  for (int64_t row : keys)
    POLAR_CHECK(row >= 0 && row < k.size(0), "varlen_attention_padded: key_index names row ", row,
                " of ", k.size(0), " keys");
  auto p = std::make_shared<Plan>();
  p->dtype = q.scalar_type();
  p->device = q.device();
  // A call costs about as much as this many query-key scores (2 MFLOP of 4 * D * Hq each).
  const int64_t call_cost = std::max<int64_t>(64, 2'000'000 / (4 * q.size(2) * q.size(1)));
  const int64_t n_k = key_index.defined() ? key_index.numel() : k.size(0);
  std::vector<Span> plain, candidates;
  for (const Span& s : read_block_spans("varlen_attention_padded", qv, kv, q.size(0), n_k))
    (s.q_len == s.k_len ? plain : candidates).push_back(s);
  p->chunks = make_causal_chunks(std::move(plain), call_cost);
  if (!candidates.empty())
    p->groups = plan_prefix_groups(candidates, keys, q.size(0), call_cost, q.device());
  build_indices(*p, keys, q.size(0));
  p->cu_q = std::move(qv);
  p->cu_k = std::move(kv);
  p->key_index = std::move(keys);
  std::lock_guard<std::mutex> lock(mutex);
  last = p;
  return last;
}

}  // namespace

Tensor varlen_attention_padded(const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& cu_seqlens_q, const Tensor& cu_seqlens_k) {
  return varlen_attention_padded(q, k, v, cu_seqlens_q, cu_seqlens_k, Tensor());
}

Tensor varlen_attention_padded(const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& cu_seqlens_q, const Tensor& cu_seqlens_k,
                               const Tensor& key_index) {
  check_block_attention_inputs("varlen_attention_padded", q, k, v);
  const auto plan = plan_for(q, k, cu_seqlens_q, cu_seqlens_k, key_index);
  if (plan->chunks.empty() && !plan->groups) return q * 0;  // no block has queries
  if (plan->groups && !q.device().is_cpu()) {               // the candidates' kernel is the CPU's
    const Tensor kk = key_index.defined() ? k.index_select(0, key_index) : k;
    const Tensor vv = key_index.defined() ? v.index_select(0, key_index) : v;
    return varlen_attention_reference(q, kk, vv, cu_seqlens_q, cu_seqlens_k);
  }
  const int64_t hq = q.size(1), hkv = k.size(1), d = q.size(2);
  std::vector<Tensor> outs;
  if (!plan->chunks.empty()) {
    // Split (not narrowed): the backward of a split is one concatenation of the chunks'
    // gradients, where narrowing would add a zero-filled tensor of the whole size per chunk.
    const auto qs = q.index_select(0, plan->q_index).split_with_sizes(plan->sizes, 0);
    const auto ks = k.index_select(0, plan->k_index).split_with_sizes(plan->sizes, 0);
    const auto vs = v.index_select(0, plan->k_index).split_with_sizes(plan->sizes, 0);
    for (size_t i = 0; i < plan->chunks.size(); ++i) {
      const auto n = static_cast<int64_t>(plan->chunks[i].spans.size());
      const int64_t lq = plan->chunks[i].lq;
      const auto heads_first = [&](const Tensor& x, int64_t heads) {
        return x.view({n, lq, heads, d}).transpose(1, 2);  // (n, heads, lq, D)
      };
      const Tensor o = torch::scaled_dot_product_attention(
          heads_first(qs[i], hq), heads_first(ks[i], hkv), heads_first(vs[i], hkv), {},
          /*dropout_p=*/0.0, /*is_causal=*/true, /*scale=*/std::nullopt, /*enable_gqa=*/hq != hkv);
      outs.push_back(o.transpose(1, 2).reshape({n * lq, hq, d}));
    }
  }
  if (plan->groups) outs.push_back(prefix_group_attention(q, k, v, plan->groups));
  const Tensor all = outs.size() == 1 ? outs[0] : torch::cat(outs, 0);
  return all.index_select(0, plan->out_index);  // (Nq, Hq, D)
}

}  // namespace polar::kernels
