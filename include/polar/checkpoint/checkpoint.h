// Checkpoints: a directory written atomically (DIR.tmp-PID, then rename) holding
//   model.safetensors     weights, Hugging Face names (see model/reward_model.h); with LoRA the
//                         adapters and the head only (checkpoint/lora_checkpoint.h)
//   config.json           the resolved training config; "model" is the model shape,
//                         "tokenizer_fingerprint" the fingerprint of tokenizer/ (tokenizer.h)
//   tokenizer/            the tokenizer the model was trained with
//   optimizer.pt          AdamW state (torch::serialize), only in training checkpoints
//   trainer_state.json    step, data position, RNG state, counters; written last
// A run keeps checkpoint-<step>/ dirs (last N) and writes final/ at the end.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "polar/model/reward_model.h"
#include "polar/tokenizer/tokenizer.h"

namespace torch::optim {
class Optimizer;
}

namespace polar {

struct TrainerState {
  int64_t step = 0;             // optimizer steps completed
  int64_t groups_consumed = 0;  // data position in the global group stream
  int64_t consecutive_bad_steps = 0;
  int64_t world_size = 1;     // informational: resume works on any world size
  std::string rng_state_b64;  // CPU default generator state
  nlohmann::json to_json() const;
  static TrainerState from_json(const nlohmann::json& j, const std::string& where);
};

struct CheckpointContents {
  RewardModel* model = nullptr;
  const Tokenizer* tokenizer = nullptr;
  const nlohmann::json* config = nullptr;
  torch::optim::Optimizer* optimizer = nullptr;  // optional
  const TrainerState* state = nullptr;           // optional
  // When set, the temporary directory to complete and rename; it already holds files that other
  // ranks wrote (their optimizer shards). Otherwise DIR.tmp-PID.
  std::string staging_dir;
};

// Writes `dir` atomically; an existing `dir` is replaced.
void save_checkpoint(const std::string& dir, const CheckpointContents& contents);

// The name of the checkpoint of step `step` in a run directory: "checkpoint-<step>".
std::string checkpoint_dir_name(int64_t step);
// The step of a directory named by checkpoint_dir_name, or nullopt for any other name.
std::optional<int64_t> checkpoint_dir_step(const std::string& name);

// The highest-step complete checkpoint-<step> under `run_dir`, if any.
std::optional<std::string> find_latest_checkpoint(const std::string& run_dir);
// Removes checkpoint-<step> dirs beyond the newest `keep_last`.
void prune_checkpoints(const std::string& run_dir, int64_t keep_last);

struct LoadedModel {
  RewardModel model{nullptr};
  Tokenizer tokenizer;
  nlohmann::json config;  // the checkpoint's config.json (model shape under "model")
  ModelConfig shape;
};

// Loads weights, shape and tokenizer from a polar checkpoint directory; a Hugging Face
// directory (config.json with "architectures") is imported through io/hf when available.
// `verify`: check the tensor files' checksums and that every weight is finite (see
// checkpoint/verify.h); off only for very large models whose owner vouches for them.
LoadedModel load_model(const std::string& path, const torch::Device& device, bool verify = true);
// The shape from a checkpoint's config.json, validated like `polar train` validates a config.
ModelConfig load_model_shape(const std::string& path);
// DIR/tokenizer, checked against the fingerprint DIR/config.json stored with the weights (a
// checkpoint written before fingerprints existed has none and its tokenizer/ is taken as is).
Tokenizer load_checkpoint_tokenizer(const std::string& dir);
// Copies weights by name into `model`; every model parameter must be present with its shape
// (of a LoRA model, every trainable one: see checkpoint/lora_checkpoint.h).
// `verify`: checksums first, finiteness after.
void load_weights(RewardModel& model, const std::string& path, bool verify = true);

void load_optimizer_state(torch::optim::Optimizer& optimizer, const std::string& checkpoint_dir);
TrainerState load_trainer_state(const std::string& checkpoint_dir);

}  // namespace polar
