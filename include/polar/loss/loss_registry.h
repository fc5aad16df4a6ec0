// The losses `polar train` can use (config key loss.type), each a function from a packed batch's
// rewards to a PairLoss. The trainer and its evaluation call compute_loss, never a loss directly.
//
// Adding a loss: one X(...) line in POLAR_LOSS_TYPES (polar/loss/loss_options.h) for its name and
// help, its function (beside listwise_loss in src/loss/loss_registry.cpp) and one row in the
// table kLosses there; a static_assert checks the table covers every name.
#pragma once

#include <torch/types.h>

#include "polar/loss/loss_options.h"
#include "polar/loss/polar_loss.h"

namespace polar {

struct PackedBatch;

// The divisors of one optimizer step, counted over all its micro-batches and ranks.
struct LossDivisors {
  double pairs = 1;   // (positive, negative) pairs
  double groups = 1;  // groups (one positive and K negatives each)
};

// The configured loss of a packed batch. The result's stats (loss_sum, n_correct, n_ties,
// n_invalid) sum over micro-batches; loss_sum / loss_divisor(options, divisors) is the loss and
// the accuracy counts are per pair whatever the loss.
PairLoss compute_loss(const torch::Tensor& rewards, const PackedBatch& batch,
                      const LossDivisors& divisors, const LossOptions& options, bool fused);

// What the configured loss averages over: divisors.pairs (pairwise) or divisors.groups
// (listwise).
double loss_divisor(const LossOptions& options, const LossDivisors& divisors);

// The listwise loss on explicit indices: group g has positive pos_index[g]; pair p joins
// pair_pos[p] (a positive) and pair_neg[p]; a group's pairs are those whose pair_pos is its
// positive. Per group: -log(e^r_pos / (e^r_pos + sum_k e^(r_neg_k + margin))) plus, per pair,
// the centering and reward-scale penalties; the sum divided by divisors.groups. At K = 1 it is
// pair_loss_reference exactly.
PairLoss listwise_loss(const torch::Tensor& rewards, const torch::Tensor& pair_pos,
                       const torch::Tensor& pair_neg, const torch::Tensor& pos_index,
                       const LossDivisors& divisors, const LossOptions& options);

}  // namespace polar
