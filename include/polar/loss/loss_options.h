// LossOptions: the "loss" section of a training config: which loss (the registry in
// polar/loss/loss_registry.h) and its options, declared once as a schema
// (polar/common/config_schema.h).
#pragma once

#include "polar/common/config_schema.h"

namespace polar {

// clang-format off
#define POLAR_LOSS_TYPES(X) \
  X(Pairwise, "pairwise", "Bradley-Terry: -logsigmoid(r_pos - r_neg - margin) per (positive, negative) pair, averaged over pairs") \
  X(Listwise, "listwise", "softmax of the positive against its group's K negatives: -log(e^r_pos / (e^r_pos + sum e^(r_neg + margin))), averaged over groups; equals pairwise at K = 1")
// clang-format on
POLAR_CONFIG_ENUM(LossType, POLAR_LOSS_TYPES)

// clang-format off
// `type` is last so that LossOptions{margin, center_coef} still reads as before.
#define POLAR_LOSS_KEYS(KEY) \
  KEY(double, margin, 0.0, closed(-1e3, 1e3), "reward", "required reward gap: the positive must beat each negative by it") \
  KEY(double, center_coef, 0.0, closed(0, 1e3), "", "reward centering (as TRL): + center_coef * (r_pos + r_neg)^2 per pair") \
  KEY(double, reward_l2, 0.0, closed(0, 10), "", "reward-scale penalty (as xtuner): + reward_l2 * (r_pos^2 + r_neg^2) / 2 per pair") \
  KEY(LossType, type, LossType::Pairwise, any(), "", "the loss over each group's positive and K negatives")
// clang-format on

struct LossOptions {
  POLAR_CONFIG_KEYS(POLAR_LOSS_KEYS)
};

}  // namespace polar
