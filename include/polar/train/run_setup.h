// What a training run is built from: the resolved model (fresh, from a checkpoint, or resumed),
// tokenizer, datasets and device.
#pragma once

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

#include "polar/config/train_config.h"
#include "polar/data/batch.h"
#include "polar/data/shards.h"
#include "polar/model/reward_model.h"
#include "polar/runtime/device.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar {

struct RunSetup {
  RewardModel model{nullptr};
  Tokenizer tokenizer;
  GroupDataset train_data;
  std::optional<GroupDataset> eval_data;
  torch::Device device{torch::kCPU};
  nlohmann::json resolved_config;  // saved as config.json; "model" holds the resolved shape
};

// Builds the model (init_from > shape_from > config shape; weights from `resume_from` when
// set), the tokenizer (model.tokenizer > checkpoint's > dataset's) and opens the datasets.
// Refuses (naming both) a tokenizer other than the weights' one: model.tokenizer against
// init_from's, the resumed checkpoint's and both splits' against the model's (by fingerprint).
// Derives train.steps from train.epochs and warns when the run reads its data more than once.
RunSetup prepare_run(TrainConfig& config, const torch::Device& device,
                     const std::optional<std::string>& resume_from);

// A dataset dir (with train/ and eval/) or a split dir (with split.json) -> the split dir.
std::string resolve_split_dir(const std::string& path, const std::string& split);

// Drops metrics.jsonl lines with "step" > `step` (a resumed run rewrites what follows).
void truncate_metrics_after(const std::string& path, int64_t step);

}  // namespace polar
