// RoPE inverse frequencies (linear and llama3 scaling) and cos/sin tables, in transformers'
// op order (modeling_rope_utils: _compute_default/linear/llama3_parameters; Python's
// `scalar / tensor` is tensor.reciprocal() * scalar).
#include "polar/model/rope.h"

#include <torch/torch.h>

#include <cmath>

namespace polar {

using torch::Tensor;

Tensor rope_inv_freq(const ModelConfig& c, const torch::Device& device) {
  const int64_t D = c.head_size();
  const Tensor exponents =
      torch::arange(0, D, 2, torch::TensorOptions().dtype(torch::kInt64).device(device))
          .to(torch::kFloat) /
      static_cast<double>(D);
  const Tensor inv_freq = torch::pow(c.rope_theta, exponents).reciprocal();  // (D/2)
  if (c.rope_type == RopeType::Linear) return inv_freq / c.rope_scaling;     // positions / factor
  // llama3: wavelengths longer than original / low_freq_factor are divided by the factor, those
  // shorter than original / high_freq_factor kept, and the ones between interpolated smoothly.
  const double factor = c.rope_scaling, low = c.rope_low_freq_factor,
               high = c.rope_high_freq_factor;
  const double old_context = static_cast<double>(c.rope_original_max_position);
  const double low_freq_wavelen = old_context / low, high_freq_wavelen = old_context / high;
  const Tensor wavelen = inv_freq.reciprocal() * (2 * M_PI);
  Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq);
  const Tensor smooth = (wavelen.reciprocal() * old_context - low) / (high - low);
  const Tensor smoothed = torch::rsub(smooth, 1) * scaled / factor + smooth * scaled;
  const Tensor medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
  return torch::where(medium, smoothed, scaled);
}

RopeTables rope_tables(const ModelConfig& c, const Tensor& positions, torch::ScalarType dtype) {
  const Tensor inv_freq = rope_inv_freq(c, positions.device());
  const Tensor freqs = positions.to(torch::kFloat).unsqueeze(-1) * inv_freq;  // (B, T, D/2)
  const Tensor angles = torch::cat({freqs, freqs}, -1).unsqueeze(2);          // (B, T, 1, D)
  return {angles.cos().to(dtype), angles.sin().to(dtype)};
}

}  // namespace polar
