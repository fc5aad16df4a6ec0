#include "block_spans.h"

#include <torch/torch.h>

#include "polar/common/error.h"

namespace polar::kernels {

void check_block_attention_inputs(const char* who, const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v) {
  POLAR_CHECK(q.dim() == 3 && k.dim() == 3 && v.sizes() == k.sizes() && k.size(2) == q.size(2), who,
              ": q must be (Nq, Hq, D) and k, v (Nk, Hkv, D), got ", q.sizes(), ", ", k.sizes(),
              ", ", v.sizes());
  POLAR_CHECK(k.size(1) > 0 && q.size(1) % k.size(1) == 0, who, ": Hq = ", q.size(1),
              " must be a multiple of Hkv = ", k.size(1));
  POLAR_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type() &&
                  k.device() == q.device() && v.device() == q.device(),
              who, ": q, k and v must share dtype and device");
}

std::vector<int64_t> cu_seqlens_values(const torch::Tensor& cu) {
  const torch::Tensor c = cu.to(torch::kCPU, torch::kInt64).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

std::vector<BlockSpan> read_block_spans(const char* who, const std::vector<int64_t>& q,
                                        const std::vector<int64_t>& k, int64_t n_q, int64_t n_k) {
  POLAR_CHECK(q.size() >= 2 && q.size() == k.size(), who,
              ": cu_seqlens_q and cu_seqlens_k must both be (S + 1), got ", q.size(), " and ",
              k.size(), " entries");
  const auto n = static_cast<int64_t>(q.size()) - 1;
  POLAR_CHECK(q[0] == 0 && k[0] == 0 && q[n] == n_q && k[n] == n_k, who,
              ": cu_seqlens must run from 0 to the token counts (", n_q, ", ", n_k, "), got [",
              q[0], ", ", q[n], "] and [", k[0], ", ", k[n], "]");
  std::vector<BlockSpan> spans;
  spans.reserve(static_cast<size_t>(n));
  for (int64_t b = 0; b < n; ++b) {
    const BlockSpan s{q[b], q[b + 1] - q[b], k[b], k[b + 1] - k[b]};
    POLAR_CHECK(s.q_len >= 0 && s.k_len >= s.q_len, who, ": block ", b, " has ", s.q_len,
                " queries and ", s.k_len, " keys (needs 0 <= queries <= keys)");
    if (s.q_len > 0) spans.push_back(s);
  }
  return spans;
}

}  // namespace polar::kernels
