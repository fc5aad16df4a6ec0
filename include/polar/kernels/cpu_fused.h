// One-pass CPU kernels for the model's elementwise chains (fp32 and fp64, contiguous). On a CPU
// these ops are bound by memory traffic, so one pass forward and one backward instead of the
// five to ten passes of their ATen compositions is most of their cost. Each equals its
// composition (the plain reference, kept in the model and the tests) up to float rounding, and
// carries autograd.
#pragma once

#include <torch/types.h>

namespace polar::kernels {

// Whether the fused CPU kernels take x: a CPU fp32/fp64 tensor (weights of the same dtype).
bool cpu_fused_available(const torch::Tensor& x);

// HF LlamaRMSNorm: weight * (x * rsqrt(mean(x^2, -1) + eps)) over the last dimension.
torch::Tensor rms_norm_cpu(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// HF rotary embedding: x * cos + rotate_half(x) * sin, x (N, heads, D), cos/sin (N, D) shared
// by the heads of a token; rotate_half maps the halves (x1, x2) to (-x2, x1).
torch::Tensor rope_cpu(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace polar::kernels
