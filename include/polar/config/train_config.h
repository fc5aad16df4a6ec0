// TrainConfig: everything `polar train` reads, as typed option structs parsed from JSON with
// unknown keys rejected. The resolved config (defaults filled in, overrides applied, model shape
// resolved) is printed at start and saved as config.json beside every checkpoint.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "polar/loss/polar_loss.h"
#include "polar/model/config.h"
#include "polar/model/lora_config.h"

namespace polar {

struct ModelSection {
  ModelConfig shape;         // used when neither init_from nor shape_from is set
  bool shape_given = false;  // any shape key present in the config
  std::string init_from;     // checkpoint (or Hugging Face directory): weights + shape + tokenizer
  std::string shape_from;    // checkpoint whose shape (not weights) a fresh model takes
  std::string tokenizer;     // tokenizer dir; default: the checkpoint's, else the data's
  uint64_t init_seed = 0;    // 0: use train.seed
  bool reset_head = false;   // re-initialise the reward head after init_from
  bool zero_head = false;    // start the reward head at zero (every reward starts at 0)
  LoraConfig lora;           // "lora": adapters on a frozen base (rank 0: full fine-tuning)
};

struct DataSection {
  std::string train;          // split dir (DATASET/train) or dataset dir (its train/ is used)
  std::string eval;           // split dir; empty: DATASET/eval when it has groups
  int64_t row_tokens = 1024;  // packed row capacity
  int64_t micro_batch_tokens = 8192;  // computed-token budget of one micro-batch (forward/backward)
  bool shared_prefix = true;  // pack each group's prefix once for all its candidates (exact)
};

struct TrainSection {
  int64_t steps = 100;
  double epochs = 0;  // > 0: steps = ceil(epochs * train groups / batch_groups), replacing steps
  int64_t batch_groups = 32;  // groups per optimizer step, across all ranks
  double lr = 1e-3;
  double min_lr_ratio = 0.1;   // cosine decays to lr * min_lr_ratio
  double warmup_ratio = 0.03;  // of steps; warmup_steps overrides when >= 0
  int64_t warmup_steps = -1;
  double weight_decay = 0.0;   // on backbone matrices only (see param_groups.h)
  double head_lr_scale = 1.0;  // the reward head's lr is lr * head_lr_scale
  int64_t probe_steps = 0;     // the first probe_steps steps train only the head (linear probe)
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double grad_clip = 1.0;  // 0: off
  int64_t seed = 0;
  std::string device = "auto";     // auto | cpu | cuda
  std::string precision = "fp32";  // fp32 | bf16 (CUDA: bf16 autocast, fp32 master weights)
  int64_t max_bad_steps = 3;       // consecutive non-finite steps before aborting
  int64_t threads = 0;             // intra-op threads, 0: LibTorch default
  bool fused_kernels = true;       // fused CUDA head/loss when available
  // auto: varlen flash attention for packed rows on CUDA in bf16 when available, else masked
  // SDPA | math: always masked SDPA | varlen: require the flash path.
  std::string attention = "auto";
  double dist_timeout_s = 300;  // collective/rendezvous timeout
  // 0: replicated optimizer (DDP) | 1: ZeRO-1 (optimizer state and master weights sharded)
  // | 2: ZeRO-2 (gradients sharded too). See docs/distributed.md.
  int64_t zero = 0;
  // Recompute decoder blocks in backward: none | blocks (every block) | every_k (blocks 0, k, 2k,
  // ...).
  std::string activation_checkpointing = "none";
  int64_t activation_checkpointing_k = 2;
  // Master weights and AdamW state in host memory, update on the CPU (needs zero 1 or 2).
  bool offload_optimizer = false;
  // fp32 | bf16: the dtype of the weight matrices on the device. bf16 (needs zero 2, precision
  // bf16, CUDA) halves their memory and the gradient traffic; the fp32 master weights stay in
  // the sharded optimizer.
  std::string param_dtype = "fp32";
};

struct EvalSection {
  int64_t every = 0;       // steps between evals, 0: only at the end
  int64_t max_groups = 0;  // 0: the whole eval split; else a uniform sample seeded by train.seed
};

struct RunSection {
  std::string output_dir = "runs/default";
  int64_t checkpoint_every = 0;  // 0: only at the end
  int64_t keep_last = 2;
  int64_t log_every = 1;
  // Checkpoint and stop after this many steps in this invocation (0: run to the end); for
  // time-limited job slots: the next invocation continues with --resume.
  int64_t stop_after_steps = 0;
  // TensorBoard event files under <output_dir>/tensorboard/ (rank 0): every number of the
  // metrics.jsonl line; flushed every step (0) or at most this many seconds late.
  bool tensorboard = true;
  double tensorboard_flush_secs = 0;
};

struct TrainConfig {
  std::string stage = "pretrain";  // pretrain | finetune
  ModelSection model;
  DataSection data;
  LossOptions loss;
  TrainSection train;
  EvalSection eval;
  RunSection run;

  static TrainConfig from_json(const nlohmann::json& j, const std::string& where);
  nlohmann::json to_json() const;
};

// The shape keys of a config's "model" section (drops init_from, shape_from, tokenizer,
// init_seed, reset_head, zero_head, lora), as ModelConfig::from_json expects them.
nlohmann::json model_shape_json(const nlohmann::json& model_section);

// Reads `path`, applies "--set key=value" overrides, parses. Errors name the file and key.
TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides);

// The model's activation-checkpointing interval for train.activation_checkpointing: none -> 0,
// blocks -> 1, every_k -> train.activation_checkpointing_k.
int64_t activation_checkpoint_interval(const TrainSection& train);

// Learning rate at `step` (0-based): linear warm-up, then cosine to lr * min_lr_ratio.
double learning_rate_at(const TrainSection& train, int64_t step);

}  // namespace polar
