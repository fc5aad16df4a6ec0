// The grouped POLAR pair loss kernel (src/kernels/pair_loss.cu): every (positive, negative) pair
// of G groups with K_g >= 1 negatives each, value and counts in one launch, dL/dr in one more,
// deterministic. The loss module's pair_loss (polar/loss/polar_loss.h) is the entry point that
// chooses between this and the LibTorch reference; this header takes plain numbers only.
#pragma once

#include <torch/types.h>

namespace polar::kernels {

struct GroupedPairLoss {
  torch::Tensor loss;  // 0-dim, float32 (float64 for double rewards): sum / global_pairs; autograd
  torch::Tensor
      stats;  // (4) float64 on the rewards' device: loss_sum, n_correct, n_ties, n_invalid
};

// Group g has positive pos_index[g] and negatives neg_index[neg_offsets[g] .. neg_offsets[g+1]).
// Per pair: softplus(-(r_pos - r_neg - margin)) + center_coef * (r_pos + r_neg)^2, summed and
// divided by global_pairs. CUDA tensors need the kernels compiled in; CPU tensors run a mirror
// of the kernels' algorithm (for tests). Nothing is read back to the host: malformed groups or
// indices show up as n_invalid > 0 in stats, which the reader must reject.
GroupedPairLoss pair_loss_grouped(const torch::Tensor& rewards, const torch::Tensor& pos_index,
                                  const torch::Tensor& neg_offsets, const torch::Tensor& neg_index,
                                  double global_pairs, double margin, double center_coef);

}  // namespace polar::kernels
