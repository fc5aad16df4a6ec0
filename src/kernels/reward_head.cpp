// Reward head (gather -> RMSNorm -> score): the LibTorch reference, the autograd Function over
// the fused kernel (src/kernels/reward_head.cu; on CPU tensors its backward's formulas in
// LibTorch ops) and the one dispatch between the two. See reward_head.cu for the closed-form
// backward both implement.
#include <torch/torch.h>

#include "cuda_util.h"
#include "fused_detail.h"
#include "polar/common/error.h"
#include "polar/kernels/cuda.h"
#include "polar/kernels/reward_head.h"

namespace polar::kernels {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void check_head_inputs(const Tensor& hidden, const Tensor& idx, const Tensor& norm_weight,
                       const Tensor& head_weight) {
  POLAR_CHECK(hidden.defined() && hidden.dim() == 2 && hidden.is_floating_point(),
              "reward_head: hidden must be a floating (T, H) tensor, got ",
              hidden.defined() ? hidden.sizes() : c10::IntArrayRef{});
  const int64_t T = hidden.size(0), H = hidden.size(1);
  POLAR_CHECK(H > 0, "reward_head: hidden size must be positive");
  POLAR_CHECK(idx.defined() && idx.dim() == 1 &&
                  (idx.scalar_type() == torch::kLong || idx.scalar_type() == torch::kInt),
              "reward_head: idx must be a 1-D int64 tensor of row indices");
  POLAR_CHECK(norm_weight.defined() && norm_weight.dim() == 1 && norm_weight.size(0) == H &&
                  norm_weight.is_floating_point(),
              "reward_head: norm_weight must be (", H, "), got ", norm_weight.sizes());
  POLAR_CHECK(head_weight.defined() && head_weight.numel() == H &&
                  head_weight.is_floating_point() &&
                  (head_weight.dim() == 1 || (head_weight.dim() == 2 && head_weight.size(0) == 1)),
              "reward_head: head_weight must be (1, ", H, "), got ", head_weight.sizes());
  POLAR_CHECK(idx.device() == hidden.device() && norm_weight.device() == hidden.device() &&
                  head_weight.device() == hidden.device(),
              "reward_head: hidden, idx and weights must be on one device");
  if (!idx.is_cuda() && idx.numel() > 0) {  // a device check would cost a sync: kernels give NaN
    const int64_t lo = idx.min().item<int64_t>(), hi = idx.max().item<int64_t>();
    POLAR_CHECK(lo >= 0 && hi < T, "reward_head: reward index out of range [0, ", T,
                "): ", lo < 0 ? lo : hi);
  }
}

// Accumulation type: fp32, or fp64 for double inputs (CPU mirror and reference only).
torch::ScalarType acc_type(const Tensor& hidden) {
  return hidden.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
}

bool kernel_supports(const Tensor& hidden) {
  const auto t = hidden.scalar_type();
  return t == torch::kFloat || t == torch::kBFloat16 || t == torch::kHalf;
}

// The reference's math, all in fp32 (fp64 for double hidden states) so that bf16 rewards keep
// their precision: HF's RMSNorm on the gathered rows, then the score projection.
Tensor reference_rewards(const Tensor& hidden, const Tensor& idx, const Tensor& norm_weight,
                         const Tensor& head_weight, double eps) {
  const auto acc = acc_type(hidden);
  const Tensor h = hidden.index_select(0, idx.to(torch::kLong)).to(acc);  // (N, H)
  const Tensor normed = h * torch::rsqrt(h.square().mean(-1, /*keepdim=*/true) + eps);
  const Tensor weighted = normed * norm_weight.to(acc);                                  // (N, H)
  return torch::matmul(weighted, head_weight.reshape({1, -1}).to(acc).t()).squeeze(-1);  // (N)
}

#ifdef POLAR_WITH_CUDA
cuda::HiddenType hidden_type(const Tensor& hidden) {
  switch (hidden.scalar_type()) {
    case torch::kBFloat16:
      return cuda::HiddenType::BF16;
    case torch::kHalf:
      return cuda::HiddenType::F16;
    default:
      return cuda::HiddenType::F32;
  }
}
#endif

struct RewardHeadFunction : public torch::autograd::Function<RewardHeadFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& hidden_in, const Tensor& idx_in,
                        const Tensor& norm_weight, const Tensor& head_weight, double eps) {
    const Tensor hidden = hidden_in.contiguous();             // (T, H)
    const Tensor idx = idx_in.to(torch::kLong).contiguous();  // (N)
    const auto acc = acc_type(hidden);
    const Tensor nw = norm_weight.to(acc).contiguous();                // (H)
    const Tensor hw = head_weight.to(acc).reshape({-1}).contiguous();  // (H)
    const int64_t H = hidden.size(1);
    Tensor rewards, rstd;  // (N), (N)
    if (hidden.is_cuda()) {
#ifdef POLAR_WITH_CUDA
      const int64_t T = hidden.size(0), N = idx.size(0);
      c10::cuda::CUDAGuard guard(hidden.device());
      rewards = torch::empty({N}, hidden.options().dtype(torch::kFloat));
      rstd = torch::empty({N}, rewards.options());
      cuda::check(cuda::reward_head_forward(
                      hidden.data_ptr(), hidden_type(hidden), T, H, idx.data_ptr<int64_t>(), N,
                      nw.data_ptr<float>(), hw.data_ptr<float>(), static_cast<float>(eps),
                      rewards.data_ptr<float>(), rstd.data_ptr<float>(), cuda::current_stream()),
                  "reward_head forward kernel");
#else
      POLAR_CHECK(false, "reward_head: CUDA kernels are not compiled in");
#endif
    } else {  // the kernel's saved statistic; the rewards are the reference's
      const Tensor x = hidden.index_select(0, idx).to(acc);  // (N, H)
      rstd = torch::rsqrt(x.square().sum(1) / static_cast<double>(H) + eps);
      rewards = reference_rewards(hidden, idx, nw, hw, eps);
    }
    ctx->save_for_backward({hidden, idx, nw, hw, rewards, rstd});
    ctx->saved_data["norm_dtype"] = static_cast<int64_t>(norm_weight.scalar_type());
    ctx->saved_data["head_dtype"] = static_cast<int64_t>(head_weight.scalar_type());
    ctx->saved_data["head_sizes"] = head_weight.sizes().vec();
    return rewards;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &hidden = saved[0], &idx = saved[1], &nw = saved[2], &hw = saved[3];
    const Tensor &rewards = saved[4], &rstd = saved[5];
    const int64_t T = hidden.size(0), H = hidden.size(1);
    const Tensor grad_r = grads[0].to(rewards.scalar_type()).contiguous();  // (N)
    Tensor grad_rows, grad_nw, grad_hw;  // (N, H) in the hidden type, (H), (H)
    if (hidden.is_cuda()) {
#ifdef POLAR_WITH_CUDA
      const int64_t N = idx.size(0);
      c10::cuda::CUDAGuard guard(hidden.device());
      grad_rows = torch::empty({N, H}, hidden.options());
      grad_nw = torch::zeros({H}, nw.options());
      grad_hw = torch::zeros({H}, nw.options());
      const Tensor workspace = torch::empty({cuda::reward_head_partial_rows(N) * H}, nw.options());
      cuda::check(cuda::reward_head_backward(
                      hidden.data_ptr(), hidden_type(hidden), T, H, idx.data_ptr<int64_t>(), N,
                      nw.data_ptr<float>(), hw.data_ptr<float>(), rewards.data_ptr<float>(),
                      rstd.data_ptr<float>(), grad_r.data_ptr<float>(), grad_rows.data_ptr(),
                      grad_nw.data_ptr<float>(), grad_hw.data_ptr<float>(),
                      workspace.data_ptr<float>(), cuda::current_stream()),
                  "reward_head backward kernel");
#endif
    } else {  // the kernel's formulas: dx = g*rstd*(u - x*rstd*r/H), A = sum_n g*rstd*x
      const Tensor x = hidden.index_select(0, idx).to(nw.scalar_type());  // (N, H)
      const Tensor g = (grad_r * rstd).unsqueeze(1);                      // (N, 1)
      const Tensor coef = (rstd * rewards / static_cast<double>(H)).unsqueeze(1);
      grad_rows = (g * ((nw * hw).unsqueeze(0) - x * coef)).to(hidden.scalar_type());
      const Tensor a = (g * x).sum(0);  // (H)
      grad_nw = a * hw;
      grad_hw = a * nw;
    }
    Tensor grad_hidden;
    if (ctx->needs_input_grad(0)) {
      // Accumulating scatter: repeated indices add up; on CUDA it is the sort-based,
      // deterministic index_put_. Out-of-range rows (NaN rewards) have zero gradient rows.
      grad_hidden = torch::zeros_like(hidden).index_put_({idx.clamp(0, T - 1)}, grad_rows, true);
    }
    const auto norm_dtype = static_cast<torch::ScalarType>(ctx->saved_data["norm_dtype"].toInt());
    const auto head_dtype = static_cast<torch::ScalarType>(ctx->saved_data["head_dtype"].toInt());
    const auto head_sizes = ctx->saved_data["head_sizes"].toIntVector();
    return {grad_hidden, Tensor(), grad_nw.to(norm_dtype), grad_hw.to(head_dtype).view(head_sizes),
            Tensor()};
  }
};

}  // namespace

Tensor reward_head_reference(const Tensor& hidden, const Tensor& idx, const Tensor& norm_weight,
                             const Tensor& head_weight, double eps) {
  check_head_inputs(hidden, idx, norm_weight, head_weight);
  return reference_rewards(hidden, idx, norm_weight, head_weight, eps);
}

Tensor reward_head(const Tensor& hidden, const Tensor& idx, const Tensor& norm_weight,
                   const Tensor& head_weight, double eps, bool use_kernel) {
  check_head_inputs(hidden, idx, norm_weight, head_weight);
  if (use_kernel && hidden.is_cuda() && kernel_supports(hidden) && cuda_kernels_available()) {
    return RewardHeadFunction::apply(hidden, idx, norm_weight, head_weight, eps);
  }
  return reward_head_reference(hidden, idx, norm_weight, head_weight, eps);
}

namespace detail {

Tensor reward_head_fused(const Tensor& hidden, const Tensor& idx, const Tensor& norm_weight,
                         const Tensor& head_weight, double eps) {
  check_head_inputs(hidden, idx, norm_weight, head_weight);
  if (hidden.is_cuda()) {
    POLAR_CHECK(cuda_kernels_available(), "reward_head: the CUDA kernels are not compiled in");
    POLAR_CHECK(kernel_supports(hidden),
                "reward_head: the kernel takes fp32, bf16 or fp16 hidden "
                "states, got ",
                hidden.scalar_type());
  }
  return RewardHeadFunction::apply(hidden, idx, norm_weight, head_weight, eps);
}

}  // namespace detail
}  // namespace polar::kernels
