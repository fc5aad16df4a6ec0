// The result every reference loss of this module builds (private to src/loss).
#pragma once

#include <torch/torch.h>

#include "polar/loss/polar_loss.h"

namespace polar::loss_detail {

// loss = sum / divisor; stats = (sum, pairs with r_pos > r_neg, ties, 0 invalid) in float64.
inline PairLoss make_pair_loss(const torch::Tensor& sum, double divisor, int64_t n_pairs,
                               const torch::Tensor& r_pos, const torch::Tensor& r_neg) {
  PairLoss out;
  out.loss = sum / divisor;
  out.n_pairs = n_pairs;
  torch::NoGradGuard no_grad;
  const auto as_double = [](const torch::Tensor& t) { return t.to(torch::kDouble); };
  out.stats = torch::stack({as_double(sum), as_double((r_pos > r_neg).sum()),
                            as_double((r_pos == r_neg).sum()),
                            torch::zeros({}, sum.options().dtype(torch::kDouble))});
  return out;
}

}  // namespace polar::loss_detail
