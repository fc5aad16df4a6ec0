// Test helper: the grouped loss kernel's entry (on CPU tensors: its mirror) as a PairLoss.
#pragma once

#include <torch/types.h>

#include "polar/kernels/pair_loss.h"
#include "polar/loss/polar_loss.h"

namespace polar::testutil {

inline PairLoss grouped_kernel_loss(const torch::Tensor& r, const torch::Tensor& pos,
                                    const torch::Tensor& off, const torch::Tensor& neg,
                                    double global_pairs, const LossOptions& opt) {
  const kernels::GroupedPairLoss out =
      kernels::pair_loss_grouped(r, pos, off, neg, global_pairs, opt.margin, opt.center_coef);
  PairLoss l;
  l.loss = out.loss;
  l.stats = out.stats;
  l.n_pairs = neg.size(0);
  return l;
}

}  // namespace polar::testutil
