// TrainConfig: everything `polar train` reads, declared once as a schema
// (polar/common/config_schema.h): each key's type, default, allowed values, unit and help live
// in the KEYS lists below, and parsing (unknown keys rejected, with a "did you mean"), checks,
// to_json, `--set` and the reference (`polar config --explain`, docs/config.md) come from them.
// The resolved config (defaults filled in, overrides applied, model shape resolved) is printed at
// start and saved as config.json beside every checkpoint.
//
// Adding a key is one KEY(...) line in its section's list; a check that involves two keys goes in
// TrainConfig::validate (train_config.cpp).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "polar/common/config_schema.h"
#include "polar/common/precision.h"
#include "polar/loss/loss_options.h"
#include "polar/model/config.h"
#include "polar/model/lora_config.h"

namespace polar {

// Upper bounds that reject typos and sizes no machine could hold: counts (steps, seeds), groups
// per step, tokens per packed row (attention is quadratic in it), tokens per micro-batch.
inline constexpr double kMaxCount = 1e15;
inline constexpr double kMaxGroups = 1048576;        // 2^20
inline constexpr double kMaxRowTokens = 65536;       // 2^16
inline constexpr double kMaxBatchTokens = 16777216;  // 2^24

// "auto", "cpu", "cuda" or "cuda:N".
bool is_device_name(const std::string& name);

// clang-format off
#define POLAR_STAGES(X) \
  X(Pretrain, "pretrain", "reward pre-training on synthetic preference groups") \
  X(Finetune, "finetune", "fine-tuning on human preference groups")
POLAR_CONFIG_ENUM(Stage, POLAR_STAGES)

#define POLAR_ATTENTION_PATHS(X) \
  X(Auto, "auto", "varlen flash attention on CUDA in bf16 when available, else per-sequence blocks (CPU) or masked SDPA") \
  X(Math, "math", "always the dense masked SDPA") \
  X(Varlen, "varlen", "require the varlen flash path (CUDA, bf16, kernels built)")
POLAR_CONFIG_ENUM(AttentionPath, POLAR_ATTENTION_PATHS)

#define POLAR_CHECKPOINTING_CHOICES(X) \
  X(None, "none", "keep every activation") \
  X(Blocks, "blocks", "recompute every decoder block in backward") \
  X(EveryK, "every_k", "recompute blocks 0, k, 2k, ... (k = train.activation_checkpointing_k)")
POLAR_CONFIG_ENUM(ActivationCheckpointing, POLAR_CHECKPOINTING_CHOICES)

#define POLAR_MODEL_SECTION_KEYS(KEY) \
  KEY(std::string, init_from, "", any(), "path", "checkpoint or Hugging Face directory: weights, shape and tokenizer") \
  KEY(std::string, shape_from, "", any(), "path", "checkpoint whose shape (not weights) a fresh model takes") \
  KEY(std::string, tokenizer, "", any(), "path", "tokenizer directory; default: the checkpoint's, else the data's") \
  KEY(int64_t, init_seed, 0, closed(0, kMaxCount), "", "seed of the initial weights; 0: train.seed") \
  KEY(bool, reset_head, false, any(), "", "re-initialise the reward head after init_from") \
  KEY(bool, zero_head, false, any(), "", "start the reward head at zero (every reward starts at 0)")

#define POLAR_DATA_KEYS(KEY) \
  KEY(std::string, train, "", any(), "path", "split dir (DATASET/train) or dataset dir (its train/ is used)") \
  KEY(std::string, eval, "", any(), "path", "split dir; empty: DATASET/eval when it has groups") \
  KEY(int64_t, row_tokens, 1024, closed(1, kMaxRowTokens), "tokens", "packed row capacity") \
  KEY(int64_t, micro_batch_tokens, 8192, closed(1, kMaxBatchTokens), "tokens", "computed-token budget of one micro-batch (forward and backward)") \
  KEY(bool, shared_prefix, true, any(), "", "pack each group's prefix once for all its candidates (exact)")

#define POLAR_TRAIN_KEYS(KEY) \
  KEY(int64_t, steps, 100, closed(1, kMaxCount), "steps", "optimizer steps of the run") \
  KEY(double, epochs, 0, closed(0, 1e6), "epochs", "> 0: steps = ceil(epochs * train groups / batch_groups), replacing steps") \
  KEY(int64_t, batch_groups, 32, closed(1, kMaxGroups), "groups", "groups per optimizer step, across all ranks") \
  KEY(double, lr, 1e-3, above(0, 1), "", "peak learning rate (AdamW)") \
  KEY(double, min_lr_ratio, 0.1, closed(0, 1), "", "the cosine schedule decays to lr * min_lr_ratio") \
  KEY(double, warmup_ratio, 0.03, closed(0, 1), "", "linear warm-up, as a fraction of steps") \
  KEY(int64_t, warmup_steps, -1, closed(-1, kMaxCount), "steps", "warm-up steps; >= 0 overrides warmup_ratio") \
  KEY(double, weight_decay, 0.0, closed(0, 10), "", "AdamW weight decay, on backbone matrices only") \
  KEY(double, head_lr_scale, 1.0, above(0, 1000), "", "the reward head's lr is lr * head_lr_scale") \
  KEY(int64_t, probe_steps, 0, closed(0, kMaxCount), "steps", "the first probe_steps steps train only the head (linear probe)") \
  KEY(double, beta1, 0.9, below(0, 1), "", "AdamW beta1") \
  KEY(double, beta2, 0.95, below(0, 1), "", "AdamW beta2") \
  KEY(double, eps, 1e-8, above(0, 0.1), "", "AdamW epsilon") \
  KEY(double, grad_clip, 1.0, closed(0, 1e6), "", "global gradient-norm clip; 0: off") \
  KEY(int64_t, seed, 0, closed(0, kMaxCount), "", "seed of the data order, eval sample and (by default) the weights") \
  KEY(std::string, device, "auto", matching(is_device_name, "auto, cpu, cuda or cuda:N"), "", "auto: cuda:<local rank> when CUDA is available, else cpu") \
  KEY(Precision, precision, Precision::Fp32, any(), "", "compute precision (bf16: CUDA autocast, fp32 master weights)") \
  KEY(int64_t, max_bad_steps, 3, closed(1, kMaxCount), "steps", "consecutive non-finite steps before aborting") \
  KEY(int64_t, threads, 0, closed(0, 4096), "threads", "intra-op threads; 0: LibTorch's default") \
  KEY(bool, fused_kernels, true, any(), "", "fused CUDA head and loss when available") \
  KEY(AttentionPath, attention, AttentionPath::Auto, any(), "", "the attention implementation, chosen once per run") \
  KEY(double, dist_timeout_s, 300, above(0, 7 * 86400.0), "s", "collective and rendezvous timeout") \
  KEY(int64_t, zero, 0, closed(0, 2), "", "0: replicated optimizer (DDP); 1: ZeRO-1 (optimizer state sharded); 2: ZeRO-2 (gradients too)") \
  KEY(ActivationCheckpointing, activation_checkpointing, ActivationCheckpointing::None, any(), "", "recompute decoder blocks in backward") \
  KEY(int64_t, activation_checkpointing_k, 2, closed(1, 1024), "blocks", "the interval of every_k") \
  KEY(bool, offload_optimizer, false, any(), "", "master weights and AdamW state in host memory, update on the CPU (needs zero 1 or 2)") \
  KEY(Precision, param_dtype, Precision::Fp32, any(), "", "dtype of the weight matrices on the device; bf16 needs zero 2 and precision bf16")

#define POLAR_EVAL_KEYS(KEY) \
  KEY(int64_t, every, 0, closed(0, kMaxCount), "steps", "steps between evals; 0: only at the end") \
  KEY(int64_t, max_groups, 0, closed(0, kMaxCount), "groups", "0: the whole eval split; else a uniform sample seeded by train.seed")

#define POLAR_RUN_KEYS(KEY) \
  KEY(std::string, output_dir, "runs/default", non_empty(), "path", "checkpoints, config.json and metrics.jsonl go here") \
  KEY(int64_t, checkpoint_every, 0, closed(0, kMaxCount), "steps", "steps between checkpoints; 0: only at the end") \
  KEY(int64_t, keep_last, 2, closed(1, kMaxCount), "checkpoints", "checkpoint-<N> directories kept") \
  KEY(int64_t, log_every, 1, closed(1, kMaxCount), "steps", "steps between progress lines") \
  KEY(int64_t, stop_after_steps, 0, closed(0, kMaxCount), "steps", "checkpoint and stop after this many steps of this invocation (time-limited job slots; continue with --resume); 0: run to the end") \
  KEY(bool, tensorboard, true, any(), "", "TensorBoard event files under <output_dir>/tensorboard/ (rank 0): every number of the metrics.jsonl line") \
  KEY(double, tensorboard_flush_secs, 0, closed(0, 86400), "s", "flush the event file every step (0) or at most this many seconds late")

#define POLAR_RUNTIME_KEYS(KEY) \
  KEY(std::string, attention, "", any(), "", "written by polar train: the attention path the run chose for train.attention (math, varlen or blocks); ignored when read")

#define POLAR_TOP_KEYS(KEY) \
  KEY(Stage, stage, Stage::Pretrain, any(), "", "the training stage (logged and saved; the data decides what is trained)") \
  KEY(std::string, tokenizer_fingerprint, "", any(), "", "written into checkpoints' config.json; informational in a --config")
// clang-format on

struct ModelSection {
  ModelConfig shape;         // used when neither init_from nor shape_from is set
  bool shape_given = false;  // any shape key present in the config (set by the parser)
  LoraConfig lora;           // adapters on a frozen base (rank 0: full fine-tuning)
  POLAR_CONFIG_MEMBERS(POLAR_MODEL_SECTION_KEYS)
  template <class Self, class V>
  static void visit_keys(Self& self, V& v) {
    v.flatten(self.shape);
    POLAR_CONFIG_VISIT(POLAR_MODEL_SECTION_KEYS)
    v.section("lora", self.lora,
              "low-rank adapters on a frozen base (docs/lora.md); rank 0: full fine-tuning");
  }
};

struct DataSection {
  POLAR_CONFIG_KEYS(POLAR_DATA_KEYS)
};

struct TrainSection {
  POLAR_CONFIG_KEYS(POLAR_TRAIN_KEYS)
};

struct EvalSection {
  POLAR_CONFIG_KEYS(POLAR_EVAL_KEYS)
};

struct RunSection {
  POLAR_CONFIG_KEYS(POLAR_RUN_KEYS)
};

struct RuntimeSection {
  POLAR_CONFIG_KEYS(POLAR_RUNTIME_KEYS)
};

struct TrainConfig {
  ModelSection model;
  DataSection data;
  LossOptions loss;
  TrainSection train;
  EvalSection eval;
  RunSection run;
  RuntimeSection runtime;
  POLAR_CONFIG_MEMBERS(POLAR_TOP_KEYS)
  template <class Self, class V>
  static void visit_keys(Self& self, V& v) {
    POLAR_CONFIG_VISIT(POLAR_TOP_KEYS)
    v.section("model", self.model,
              "the model: its shape, or where its weights and shape come from");
    v.section("data", self.data, "the packed dataset and the micro-batch budget");
    v.section("loss", self.loss, "the loss (a registry: loss.type) and its options");
    v.section("train", self.train, "optimizer, schedule, precision, devices and parallelism");
    v.section("eval", self.eval, "evaluation on the eval split during and after training");
    v.section("run", self.run, "output directory, checkpoints, logging, stopping");
    v.section("runtime", self.runtime,
              "what polar train resolved for the run, recorded in config.json");
  }

  static TrainConfig from_json(const nlohmann::json& j, const std::string& where);
  nlohmann::json to_json() const;
  // The checks that involve more than one key; errors name the keys.
  void validate() const;
};

// Every key of the schema with its type, default, allowed values, unit and help (sections too,
// with type "section"), in declaration order.
const std::vector<KeyDoc>& train_config_keys();

// docs/config.md: the reference generated from the schema (`polar config --markdown`).
std::string train_config_markdown();
// `polar config --explain [KEY]`: one key, every key of a section, or (KEY empty) everything;
// an unknown KEY is an error with a "did you mean".
std::string explain_config_key(const std::string& key);

// Reads `path`, applies "--set key=value" overrides, parses. Errors name the file and key.
TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides);

// The model's activation-checkpointing interval for train.activation_checkpointing: none -> 0,
// blocks -> 1, every_k -> train.activation_checkpointing_k.
int64_t activation_checkpoint_interval(const TrainSection& train);

// Learning rate at `step` (0-based): linear warm-up, then cosine to lr * min_lr_ratio.
double learning_rate_at(const TrainSection& train, int64_t step);

}  // namespace polar
