// Block causal attention through ATen's scaled_dot_product_attention (its fused CPU kernel on the
// CPU): blocks of similar lengths are padded into one batch, so a packed batch costs a few SDPA
// calls per layer instead of a dozen small ops per block. The padding is bounded by a cost model
// (padded work vs the per-call overhead it saves) and masked, so the result equals the block by
// block reference; autograd flows through the gathers and SDPA's registered backward.
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <optional>
#include <vector>

#include "polar/common/error.h"
#include "polar/kernels/attention.h"

namespace polar::kernels {

using torch::Tensor;

namespace {

struct Span {
  int64_t q_begin, q_len, k_begin, k_len;
};

// Blocks padded to one (lq, lk) and computed by one SDPA call. A chunk of plain sequences
// (queries == keys) needs no mask: SDPA's causal mask is exact for them (a real query's keys
// are all real, padding keys come after it) and lets the kernel skip the upper triangle.
struct Chunk {
  std::vector<Span> spans;
  int64_t lq = 0, lk = 0;
  bool plain = false;
};

// Everything a batch's attention needs besides q, k and v; the same for every layer.
struct Plan {
  std::vector<int64_t> cu_q, cu_k;  // the key it was built for
  torch::ScalarType dtype = torch::kFloat;
  torch::Device device = torch::kCPU;
  std::vector<Chunk> chunks;
  Tensor q_index, k_index;  // padded slot -> row of q / of k, chunk after chunk
  Tensor out_index;         // query row (token order) -> padded output slot
  std::vector<Tensor>
      masks;  // per chunk (n, 1, lq, lk) additive (0 allowed, -inf not); none if plain
};

std::vector<int64_t> to_vector(const Tensor& cu) {
  const Tensor c = cu.to(torch::kCPU, torch::kInt64).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

std::vector<Span> read_spans(const std::vector<int64_t>& q, const std::vector<int64_t>& k,
                             int64_t n_q, int64_t n_k) {
  const auto n = static_cast<int64_t>(q.size()) - 1;
  POLAR_CHECK(n >= 1 && q.size() == k.size(),
              "varlen_attention_padded: cu_seqlens_q and cu_seqlens_k must both be (S + 1), got ",
              q.size(), " and ", k.size(), " entries");
  POLAR_CHECK(q[0] == 0 && k[0] == 0 && q[n] == n_q && k[n] == n_k,
              "varlen_attention_padded: cu_seqlens must run from 0 to the token counts (", n_q,
              ", ", n_k, "), got [", q[0], ", ", q[n], "] and [", k[0], ", ", k[n], "]");
  std::vector<Span> spans;
  for (int64_t b = 0; b < n; ++b) {
    const Span s{q[b], q[b + 1] - q[b], k[b], k[b + 1] - k[b]};
    POLAR_CHECK(s.q_len >= 0 && s.k_len >= s.q_len, "varlen_attention_padded: block ", b, " has ",
                s.q_len, " queries and ", s.k_len, " keys (needs 0 <= queries <= keys)");
    if (s.q_len > 0) spans.push_back(s);
  }
  return spans;
}

// Groups blocks into chunks: sorted by kind (plain sequence or candidate over a prefix) and
// length, a block joins the current chunk while the padded work grown by it costs less than
// one more call. call_cost is a call's overhead in units of one query-key score.
std::vector<Chunk> make_chunks(std::vector<Span> spans, int64_t call_cost) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    const bool a_plain = a.q_len == a.k_len, b_plain = b.q_len == b.k_len;
    if (a_plain != b_plain) return a_plain;
    return a.k_len != b.k_len ? a.k_len < b.k_len : a.q_len < b.q_len;
  });
  std::vector<Chunk> chunks;
  for (const Span& s : spans) {
    const bool plain = s.q_len == s.k_len;
    if (!chunks.empty() && chunks.back().plain == plain) {
      Chunk& c = chunks.back();
      const auto n = static_cast<int64_t>(c.spans.size());
      const int64_t lq = std::max(c.lq, s.q_len), lk = std::max(c.lk, s.k_len);
      const int64_t joined = (n + 1) * lq * lk;
      const int64_t apart = n * c.lq * c.lk + call_cost + s.q_len * s.k_len;
      if (joined <= apart) {
        c.spans.push_back(s);
        c.lq = lq;
        c.lk = lk;
        continue;
      }
    }
    chunks.push_back(Chunk{{s}, s.q_len, s.k_len, plain});
  }
  return chunks;
}

// Padding slots read a real row of their block (its first) and are masked out; a padding query
// row sees the block's first key only (in a plain chunk: the keys up to it), so its softmax
// stays finite, and its output is dropped, so its gradient is zero.
void build_indices(Plan& p, int64_t n_q) {
  std::vector<int64_t> q_index, k_index, out_index(static_cast<size_t>(n_q), -1);
  std::vector<float> mask;
  int64_t slot = 0;
  for (const Chunk& c : p.chunks) {
    const auto n = static_cast<int64_t>(c.spans.size());
    mask.assign(c.plain ? 0 : static_cast<size_t>(n * c.lq * c.lk),
                -std::numeric_limits<float>::infinity());
    for (int64_t b = 0; b < n; ++b) {
      const Span& s = c.spans[static_cast<size_t>(b)];
      for (int64_t i = 0; i < c.lq; ++i) {
        q_index.push_back(s.q_begin + (i < s.q_len ? i : 0));
        if (i < s.q_len) out_index[static_cast<size_t>(s.q_begin + i)] = slot + b * c.lq + i;
        if (c.plain) continue;
        float* row = mask.data() + (b * c.lq + i) * c.lk;
        // Query i of lq sees key j <= lk - lq + i (causal aligned to the bottom right).
        const int64_t allowed = i < s.q_len ? s.k_len - s.q_len + i + 1 : 1;
        std::fill(row, row + allowed, 0.0f);
      }
      for (int64_t j = 0; j < c.lk; ++j) k_index.push_back(s.k_begin + (j < s.k_len ? j : 0));
    }
    p.masks.push_back(c.plain ? Tensor()
                              : torch::from_blob(mask.data(), {n, 1, c.lq, c.lk}, torch::kFloat)
                                    .to(p.device, p.dtype, /*non_blocking=*/false, /*copy=*/true));
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
  std::vector<int64_t> qv = to_vector(cu_q), kv = to_vector(cu_k);
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
  p->chunks = make_chunks(read_spans(qv, kv, q.size(0), k.size(0)), call_cost);
  build_indices(*p, q.size(0));
  p->cu_q = std::move(qv);
  p->cu_k = std::move(kv);
  std::lock_guard<std::mutex> lock(mutex);
  last = p;
  return last;
}

}  // namespace

Tensor varlen_attention_padded(const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& cu_seqlens_q, const Tensor& cu_seqlens_k) {
  POLAR_CHECK(q.dim() == 3 && k.dim() == 3 && v.sizes() == k.sizes() && k.size(2) == q.size(2),
              "varlen_attention_padded: q must be (Nq, Hq, D) and k, v (Nk, Hkv, D), got ",
              q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  POLAR_CHECK(k.size(1) > 0 && q.size(1) % k.size(1) == 0,
              "varlen_attention_padded: Hq = ", q.size(1),
              " must be a multiple of Hkv = ", k.size(1));
  POLAR_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type() &&
                  k.device() == q.device() && v.device() == q.device(),
              "varlen_attention_padded: q, k and v must share dtype and device");
  const auto plan = plan_for(q, k, cu_seqlens_q, cu_seqlens_k);
  if (plan->chunks.empty()) return q * 0;  // no block has queries (keeps q in the graph)
  const int64_t hq = q.size(1), hkv = k.size(1), d = q.size(2);
  // Split (not narrowed): the backward of a split is one concatenation of the chunks'
  // gradients, where narrowing would add a zero-filled tensor of the whole size per chunk.
  const auto parts = [&](const Tensor& x, const Tensor& index, bool keys) {
    std::vector<int64_t> sizes;
    for (const Chunk& c : plan->chunks)
      sizes.push_back(static_cast<int64_t>(c.spans.size()) * (keys ? c.lk : c.lq));
    return x.index_select(0, index).split_with_sizes(sizes, 0);
  };
  const auto qs = parts(q, plan->q_index, false);  // (n * lq, Hq, D) per chunk
  const auto ks = parts(k, plan->k_index, true);   // (n * lk, Hkv, D) per chunk
  const auto vs = parts(v, plan->k_index, true);
  std::vector<Tensor> outs;
  for (size_t i = 0; i < plan->chunks.size(); ++i) {
    const Chunk& c = plan->chunks[i];
    const auto n = static_cast<int64_t>(c.spans.size());
    const auto heads_first = [&](const Tensor& x, int64_t len, int64_t heads) {
      return x.view({n, len, heads, d}).transpose(1, 2);
    };
    const std::optional<Tensor> mask =
        c.plain ? std::nullopt : std::optional<Tensor>(plan->masks[i]);
    const Tensor o = torch::scaled_dot_product_attention(
        heads_first(qs[i], c.lq, hq), heads_first(ks[i], c.lk, hkv), heads_first(vs[i], c.lk, hkv),
        mask, /*dropout_p=*/0.0,
        /*is_causal=*/c.plain, /*scale=*/std::nullopt, /*enable_gqa=*/hq != hkv);  // (n, Hq, lq, D)
    outs.push_back(o.transpose(1, 2).reshape({n * c.lq, hq, d}));
  }
  const Tensor all = outs.size() == 1 ? outs[0] : torch::cat(outs, 0);
  return all.index_select(0, plan->out_index);  // (Nq, Hq, D)
}

}  // namespace polar::kernels
