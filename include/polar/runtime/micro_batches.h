// The one micro-batch loop of training, in-training evaluation, `polar eval`, `polar score` and
// the reward server: split the groups into micro-batches by computed-token budget, pack each,
// copy it to the model's device, run the forward under the precision's autocast and hand the
// rewards on. What is done with them (loss and backward, counts, scores) is the caller's.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "polar/common/precision.h"
#include "polar/data/batch.h"
#include "polar/model/reward_model.h"

namespace polar {

struct MicroBatchOptions {
  PackOptions pack;
  int64_t token_budget = 16384;  // computed tokens per forward (group_tokens; a larger group alone)
  Precision precision = Precision::Fp32;  // Bf16: CUDA autocast around the forward
};

struct MicroBatch {
  const PackedBatch& batch;  // on the model's device
  torch::Tensor rewards;     // (N) float32, group by group, candidate by candidate
  size_t index = 0;          // position among the micro-batches of this call
  size_t count = 0;          // how many there are
  bool last() const { return index + 1 == count; }
};

using MicroBatchFn = std::function<void(const MicroBatch&)>;

// Runs `on_rewards` once per micro-batch of `groups`, in order; the forward runs under autocast,
// the callback after it (so a backward there runs outside autocast). Grad mode and train/eval
// mode are the caller's. Returns the number of micro-batches.
size_t for_each_micro_batch(RewardModel& model, const std::vector<GroupRef>& groups,
                            const MicroBatchOptions& options, const MicroBatchFn& on_rewards);

}  // namespace polar
