// The POLAR Bradley-Terry loss over groups with one reference, one positive and K >= 1
// negatives: every (positive, negative) pair contributes -logsigmoid(r_pos - r_neg - margin).
// The sum is divided by the *global* pair count of the optimizer step (all micro-batches and
// ranks), so loss and gradient do not depend on packing, accumulation or world size.
// Optional reward centering (as TRL): + center_coef * (r_pos + r_neg)^2 per pair, same divisor.
// Optional reward-scale penalty (as xtuner's L2 penalty): + reward_l2 * (r_pos^2 + r_neg^2) / 2
// per pair, which keeps pre-trained rewards near unit scale so fine-tuning can move them.
// Plain LibTorch ops: the reference that the CUDA kernels must match.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace polar {

struct LossOptions {
  double margin = 0.0;
  double center_coef = 0.0;
  double reward_l2 = 0.0;
};

struct PairLoss {
  torch::Tensor loss;       // scalar (float32 or the rewards' dtype if double): sum / global_pairs
  double loss_sum = 0.0;    // sum over this micro-batch's pairs, before dividing (for logging)
  int64_t n_pairs = 0;
  int64_t n_correct = 0;    // r_pos > r_neg strictly
  int64_t n_ties = 0;       // r_pos == r_neg
};

// rewards (N); pair_pos, pair_neg (P) int64 indices into rewards; global_pairs > 0.
PairLoss polar_pair_loss(const torch::Tensor& rewards, const torch::Tensor& pair_pos,
                         const torch::Tensor& pair_neg, double global_pairs,
                         const LossOptions& options);

}  // namespace polar
