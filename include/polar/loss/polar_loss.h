// The POLAR Bradley-Terry loss over groups with one reference, one positive and K >= 1
// negatives: every (positive, negative) pair contributes -logsigmoid(r_pos - r_neg - margin).
// The sum is divided by the *global* pair count of the optimizer step (all micro-batches and
// ranks), so loss and gradient do not depend on packing, accumulation or world size.
// Optional reward centering (as TRL): + center_coef * (r_pos + r_neg)^2 per pair, same divisor.
// Optional reward-scale penalty (as xtuner's L2 penalty): + reward_l2 * (r_pos^2 + r_neg^2) / 2
// per pair, which keeps pre-trained rewards near unit scale so fine-tuning can move them.
//
// pair_loss is the one entry point: the grouped CUDA kernel (polar/kernels/pair_loss.h) when
// asked for and usable, else pair_loss_reference, plain LibTorch ops that the kernel must match.
// Neither reads anything back to the host: the counts stay on the device until read.
#pragma once

#include <torch/types.h>

#include <cstdint>

#include "polar/loss/loss_options.h"

namespace polar {

struct PackedBatch;

// The counts a step logs, read from PairLoss::stats (one copy to the host).
struct PairCounts {
  double loss_sum = 0.0;  // sum over the pairs, before dividing (for logging)
  int64_t n_correct = 0;  // r_pos > r_neg strictly
  int64_t n_ties = 0;     // r_pos == r_neg
};

struct PairLoss {
  torch::Tensor loss;  // scalar (float32 or the rewards' dtype if double): sum / global_pairs
  // (4) float64 on the rewards' device, no grad: loss_sum, n_correct, n_ties, n_invalid (groups
  // or indices the kernel refused). Summable over micro-batches; read with read_pair_counts.
  torch::Tensor stats;
  int64_t n_pairs = 0;  // known on the host
  // Each reads stats (a device sync on CUDA): for tests and one-off use, not per micro-batch.
  double loss_sum() const;
  int64_t n_correct() const;
  int64_t n_ties() const;
};

// stats (4) of one PairLoss or a sum of several -> host counts. Throws polar::Error when the
// kernel found invalid groups or indices (n_invalid > 0).
PairCounts read_pair_counts(const torch::Tensor& stats);

// The loss of a packed batch's pairs. fused: the grouped kernel over the batch's group CSR
// when the rewards are on a CUDA device with the kernels compiled in (it has margin and
// centering; reward_l2 takes the reference); otherwise the reference on pair_pos/pair_neg.
PairLoss pair_loss(const torch::Tensor& rewards, const PackedBatch& batch, double global_pairs,
                   const LossOptions& options, bool fused);

// The same over groups given as CSR: group g has positive pos_index[g] and negatives
// neg_index[neg_offsets[g] .. neg_offsets[g+1]), K_g >= 1 (checked on the reference path).
PairLoss pair_loss(const torch::Tensor& rewards, const torch::Tensor& pos_index,
                   const torch::Tensor& neg_offsets, const torch::Tensor& neg_index,
                   double global_pairs, const LossOptions& options, bool fused);

// The reference on explicit pairs: rewards (N); pair_pos, pair_neg (P) int64 indices into
// rewards; global_pairs > 0. Indices are range-checked on CPU tensors (on CUDA a bad index is
// a device assert, and a check would cost a sync).
PairLoss pair_loss_reference(const torch::Tensor& rewards, const torch::Tensor& pair_pos,
                             const torch::Tensor& pair_neg, double global_pairs,
                             const LossOptions& options);

}  // namespace polar
