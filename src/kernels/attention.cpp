// Packed variable-length causal attention through ATen's flash attention (the varlen form that
// takes cu_seqlens). ATen registers the backward
// of _flash_attention_forward (FlashAttentionBackward0), so autograd flows through it as is.
#include <torch/torch.h>

#include "polar/common/error.h"
#include "polar/kernels/attention.h"

#ifdef POLAR_WITH_CUDA
#include <ATen/ops/_flash_attention_forward.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace polar::kernels {

bool varlen_attention_available(const torch::Tensor& q) {
#ifdef POLAR_WITH_CUDA
  if (!q.defined() || !q.is_cuda() || q.dim() != 3) return false;
  if (q.scalar_type() != torch::kBFloat16 && q.scalar_type() != torch::kHalf) return false;
  const int64_t d = q.size(2);
  if (d % 8 != 0 || d > 256) return false;  // the head sizes flash attention is built for
  int major = 0;
  // Flash attention needs sm_80 or newer (Ampere, Hopper).
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, q.get_device()) !=
      cudaSuccess) {
    return false;
  }
  return major >= 8;
#else
  (void)q;
  return false;
#endif
}

torch::Tensor varlen_attention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& cu_seqlens,
                               int64_t max_seqlen) {
  return varlen_attention(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen);
}

torch::Tensor varlen_attention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& cu_seqlens_q,
                               const torch::Tensor& cu_seqlens_k, int64_t max_seqlen_q,
                               int64_t max_seqlen_k) {
  POLAR_CHECK(varlen_attention_available(q),
              "varlen_attention: needs CUDA bf16/fp16 q of shape (T, Hq, D), D a multiple of 8 "
              "up to 256, on an sm_80+ GPU with the CUDA build; use AttentionImpl::Math otherwise");
  POLAR_CHECK(k.dim() == 3 && v.sizes() == k.sizes() && k.size(2) == q.size(2),
              "varlen_attention: k and v must be (Tk, Hkv, D) matching q ", q.sizes(), ", got ",
              k.sizes(), " and ", v.sizes());
  POLAR_CHECK(k.size(1) > 0 && q.size(1) % k.size(1) == 0, "varlen_attention: Hq = ", q.size(1),
              " must be a multiple of Hkv = ", k.size(1));
  POLAR_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type() &&
                  k.device() == q.device() && v.device() == q.device(),
              "varlen_attention: q, k and v must share dtype and device");
  POLAR_CHECK(
      cu_seqlens_q.dim() == 1 && cu_seqlens_q.size(0) >= 2 && cu_seqlens_q.device() == q.device() &&
          cu_seqlens_k.sizes() == cu_seqlens_q.sizes() && cu_seqlens_k.device() == q.device(),
      "varlen_attention: cu_seqlens_q and cu_seqlens_k must be (S + 1) on q's device");
  POLAR_CHECK(max_seqlen_q > 0 && max_seqlen_k >= max_seqlen_q,
              "varlen_attention: need 0 < max_seqlen_q <= max_seqlen_k, got ", max_seqlen_q,
              " and ", max_seqlen_k);
  if (max_seqlen_k == 1) {
    // Every block is one query over one key, so the output is that key's value. Flash
    // attention's backward returns garbage gradients for this case (seen on an H100 with a
    // single length-1 sequence), so it is computed directly; q and k stay in the graph (their
    // gradient is exactly zero), as with the flash path.
    POLAR_CHECK(k.size(0) == q.size(0),
                "varlen_attention: length-1 blocks need as many keys as queries");
    const int64_t rep = q.size(1) / k.size(1);
    return v.repeat_interleave(rep, 1) + (q + k.repeat_interleave(rep, 1)) * 0;  // (T, Hq, D)
  }
#ifdef POLAR_WITH_CUDA
  c10::cuda::CUDAGuard guard(q.device());
  const torch::Tensor cu_q = cu_seqlens_q.to(torch::kInt).contiguous();
  const torch::Tensor cu_k = cu_seqlens_k.to(torch::kInt).contiguous();
  // Flash attention wants the head dimension contiguous; packed projections usually are.
  const auto last_contiguous = [](const torch::Tensor& t) {
    return t.stride(-1) == 1 ? t : t.contiguous();
  };
  // With fewer queries than keys, flash's causal mask is aligned to the bottom right: query i
  // of lq sees keys j <= lk - lq + i, i.e. a candidate sees its whole prefix.
  auto out =
      at::_flash_attention_forward(last_contiguous(q), last_contiguous(k), last_contiguous(v), cu_q,
                                   cu_k, max_seqlen_q, max_seqlen_k, /*dropout_p=*/0.0,
                                   /*is_causal=*/true, /*return_debug_mask=*/false);
  return std::get<0>(out);  // (Tq, Hq, D)
#else
  return torch::Tensor();
#endif
}

}  // namespace polar::kernels
