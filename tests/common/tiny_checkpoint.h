// A tiny checkpoint for tests that load, corrupt or evaluate one: a 1-layer hidden-32 model
// whose vocabulary covers tiny_tokenizer_dir(), saved with the real save_checkpoint.
#pragma once

#include <functional>
#include <string>

#include "polar/model/config.h"
#include "polar/model/reward_model.h"

namespace polar::testing {

ModelConfig tiny_checkpoint_shape();

// Saves a fresh model (seed 1) at `dir`, with optimizer and trainer state when `training`;
// `edit` may change the weights first (e.g. put a NaN in). Returns `dir`.
std::string write_tiny_checkpoint(const std::string& dir, bool training = true,
                                  const std::function<void(RewardModel&)>& edit = nullptr);

}  // namespace polar::testing
