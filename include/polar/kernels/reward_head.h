// Reward head: gather the reward-token rows, final RMSNorm, score projection, in fp32.
// reward_head is the one entry point: CUDA tensors, the kernels compiled in and use_kernel ->
// the fused kernel (src/kernels/reward_head.cu); otherwise -> reward_head_reference. Both carry
// autograd, so gradients flow either way and checkpoints are the same.
#pragma once

#include <torch/types.h>

namespace polar::kernels {

// rewards (N) = (rmsnorm(hidden[idx]) * norm_weight) @ head_weight^T, computed in fp32 (fp64
// for double hidden states). hidden (T_total, H); idx (N) int64; norm_weight (H); head_weight (1,
// H).
torch::Tensor reward_head(const torch::Tensor& hidden, const torch::Tensor& idx,
                          const torch::Tensor& norm_weight, const torch::Tensor& head_weight,
                          double eps, bool use_kernel = true);
// The plain LibTorch ops (any device); the numerics of Hugging Face's head.
torch::Tensor reward_head_reference(const torch::Tensor& hidden, const torch::Tensor& idx,
                                    const torch::Tensor& norm_weight,
                                    const torch::Tensor& head_weight, double eps);

}  // namespace polar::kernels
