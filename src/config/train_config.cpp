#include "polar/config/train_config.h"

#include <cmath>

#include "polar/common/json_config.h"

namespace polar {

using nlohmann::json;

namespace {

// Upper bounds that reject typos and sizes no machine could hold: counts (steps, seeds), groups
// per step, tokens per packed row (attention is quadratic in it), tokens per micro-batch.
constexpr double kMaxCount = 1e15;
constexpr double kMaxGroups = 1048576;        // 2^20
constexpr double kMaxRowTokens = 65536;       // 2^16
constexpr double kMaxBatchTokens = 16777216;  // 2^24

const char* const kModelSectionKeys[] = {"init_from",  "shape_from", "tokenizer", "init_seed",
                                         "reset_head", "zero_head",  "lora"};

void parse_model(const json& j, const std::string& where, ModelSection& m) {
  json shape = model_shape_json(j);
  ConfigReader r(j, where);
  r.get("init_from", m.init_from);
  r.get("shape_from", m.shape_from);
  r.get("tokenizer", m.tokenizer);
  int64_t seed = static_cast<int64_t>(m.init_seed);
  r.get("init_seed", seed, closed(0, kMaxCount));
  m.init_seed = static_cast<uint64_t>(seed);
  r.get("reset_head", m.reset_head);
  r.get("zero_head", m.zero_head);
  POLAR_CHECK(!(m.reset_head && m.zero_head), where, ".reset_head and ", where,
              ".zero_head are both true: choose one way to start the reward head");
  if (const json* lora = r.object("lora")) m.lora = LoraConfig::from_json(*lora, where + ".lora");
  m.shape_given = !shape.empty();
  // vocab_size may be left out: it then comes from the tokenizer.
  if (!shape.contains("vocab_size")) shape["vocab_size"] = m.shape.vocab_size;
  m.shape = ModelConfig::from_json(shape, where);
}

// LoRA settings that another section contradicts.
void check_lora_combination(const TrainConfig& c, const std::string& where) {
  const LoraConfig& l = c.model.lora;
  if (!l.enabled()) return;
  POLAR_CHECK(c.train.param_dtype == "fp32", where,
              ".train.param_dtype: must be fp32 with model.lora (the frozen base is held in the "
              "compute dtype already; the adapters keep fp32 weights)");
  POLAR_CHECK(l.dropout == 0 || c.train.activation_checkpointing == "none", where,
              ".model.lora.dropout: must be 0 with train.activation_checkpointing (the recompute "
              "would draw other dropout masks than the forward); set one of them off");
}

}  // namespace

json model_shape_json(const json& model_section) {
  json shape = model_section;
  if (shape.is_object())
    for (const char* k : kModelSectionKeys) shape.erase(k);
  return shape;
}

TrainConfig TrainConfig::from_json(const json& j, const std::string& where) {
  TrainConfig c;
  ConfigReader r(j, where);
  r.get("stage", c.stage);
  std::string fingerprint;  // written into checkpoints' config.json; informational in a --config
  r.get("tokenizer_fingerprint", fingerprint);
  r.object("lora_base");  // a LoRA checkpoint's base (checkpoint/lora_checkpoint.h); informational
  POLAR_CHECK(c.stage == "pretrain" || c.stage == "finetune", r.path("stage"),
              ": expected \"pretrain\" or \"finetune\", got \"", c.stage, "\"");
  if (const json* m = r.object("model")) parse_model(*m, where + ".model", c.model);
  if (const json* d = r.object("data")) {
    ConfigReader s(*d, where + ".data");
    s.get("train", c.data.train);
    s.get("eval", c.data.eval);
    s.get("row_tokens", c.data.row_tokens, closed(1, kMaxRowTokens));
    s.get("micro_batch_tokens", c.data.micro_batch_tokens, closed(1, kMaxBatchTokens));
    s.get("shared_prefix", c.data.shared_prefix);
    s.finish();
    POLAR_CHECK(c.data.row_tokens > 0 && c.data.micro_batch_tokens > 0, where,
                ".data: row_tokens and micro_batch_tokens must be positive");
  }
  if (const json* l = r.object("loss")) {
    ConfigReader s(*l, where + ".loss");
    s.get("margin", c.loss.margin, closed(-1e3, 1e3));
    s.get("center_coef", c.loss.center_coef, closed(0, 1e3));
    s.get("reward_l2", c.loss.reward_l2, closed(0, 10));
    s.finish();
    POLAR_CHECK(c.loss.reward_l2 >= 0 && c.loss.reward_l2 <= 10, s.path("reward_l2"),
                ": expected a number in [0, 10], got ", c.loss.reward_l2);
  }
  if (const json* t = r.object("train")) {
    ConfigReader s(*t, where + ".train");
    auto& x = c.train;
    s.get("steps", x.steps, closed(1, kMaxCount));
    s.get("epochs", x.epochs, closed(0, 1e6));
    s.get("batch_groups", x.batch_groups, closed(1, kMaxGroups));
    s.get("lr", x.lr, above(0, 1));
    s.get("min_lr_ratio", x.min_lr_ratio, closed(0, 1));
    s.get("warmup_ratio", x.warmup_ratio, closed(0, 1));
    s.get("warmup_steps", x.warmup_steps, closed(-1, kMaxCount));
    s.get("weight_decay", x.weight_decay, closed(0, 10));
    s.get("head_lr_scale", x.head_lr_scale, above(0, 1000));
    s.get("probe_steps", x.probe_steps, closed(0, kMaxCount));
    s.get("beta1", x.beta1, below(0, 1));
    s.get("beta2", x.beta2, below(0, 1));
    s.get("eps", x.eps, above(0, 0.1));
    s.get("grad_clip", x.grad_clip, closed(0, 1e6));
    s.get("seed", x.seed, closed(0, kMaxCount));
    s.get("device", x.device);
    s.get("precision", x.precision);
    s.get("max_bad_steps", x.max_bad_steps, closed(1, kMaxCount));
    s.get("threads", x.threads, closed(0, 4096));
    s.get("fused_kernels", x.fused_kernels);
    s.get("attention", x.attention);
    s.get("dist_timeout_s", x.dist_timeout_s, above(0, 7 * 86400.0));
    s.get("zero", x.zero);
    s.get("activation_checkpointing", x.activation_checkpointing);
    s.get("activation_checkpointing_k", x.activation_checkpointing_k);
    s.get("offload_optimizer", x.offload_optimizer);
    s.get("param_dtype", x.param_dtype);
    s.finish();
    POLAR_CHECK(x.zero >= 0 && x.zero <= 2, s.path("zero"), ": expected 0, 1 or 2, got ", x.zero);
    POLAR_CHECK(x.activation_checkpointing == "none" || x.activation_checkpointing == "blocks" ||
                    x.activation_checkpointing == "every_k",
                s.path("activation_checkpointing"), ": expected none, blocks or every_k, got \"",
                x.activation_checkpointing, "\"");
    POLAR_CHECK(x.activation_checkpointing_k >= 1, s.path("activation_checkpointing_k"),
                ": must be at least 1, got ", x.activation_checkpointing_k);
    POLAR_CHECK(!x.offload_optimizer || x.zero >= 1, s.path("offload_optimizer"),
                ": needs train.zero 1 or 2 (the offloaded optimizer is the sharded one; with one "
                "process its shard is "
                "everything)");
    POLAR_CHECK(x.steps > 0, s.path("steps"), ": must be positive");
    POLAR_CHECK(x.epochs >= 0 && std::isfinite(x.epochs), s.path("epochs"),
                ": must be >= 0 (0: use train.steps)");
    POLAR_CHECK(x.batch_groups > 0, s.path("batch_groups"), ": must be positive");
    POLAR_CHECK(x.lr > 0 && std::isfinite(x.lr), s.path("lr"), ": must be a positive number");
    POLAR_CHECK(x.head_lr_scale > 0 && x.head_lr_scale <= 1000, s.path("head_lr_scale"),
                ": expected a number in (0, 1000], got ", x.head_lr_scale);
    POLAR_CHECK(x.probe_steps >= 0 && x.probe_steps < x.steps, s.path("probe_steps"),
                ": expected 0 <= probe_steps < ", "train.steps (", x.steps, "), got ",
                x.probe_steps);
    POLAR_CHECK(x.device == "auto" || x.device == "cpu" || x.device == "cuda" ||
                    x.device.rfind("cuda:", 0) == 0,
                s.path("device"), ": expected auto, cpu or cuda[:N], got \"", x.device, "\"");
    POLAR_CHECK(x.attention == "auto" || x.attention == "math" || x.attention == "varlen",
                s.path("attention"), ": expected auto, math or varlen, got \"", x.attention, "\"");
    POLAR_CHECK(x.precision == "fp32" || x.precision == "bf16", s.path("precision"),
                ": expected fp32 or bf16, got \"", x.precision, "\"");
    POLAR_CHECK(x.param_dtype == "fp32" || x.param_dtype == "bf16", s.path("param_dtype"),
                ": expected fp32 or bf16, got \"", x.param_dtype, "\"");
    POLAR_CHECK(x.param_dtype == "fp32" || (x.zero == 2 && x.precision == "bf16"),
                s.path("param_dtype"),
                ": bf16 weights need train.zero 2 (fp32 master weights and gradient accumulation "
                "in the shard) and train.precision bf16");
  }
  check_lora_combination(c, where);
  if (const json* e = r.object("eval")) {
    ConfigReader s(*e, where + ".eval");
    s.get("every", c.eval.every, closed(0, kMaxCount));
    s.get("max_groups", c.eval.max_groups, closed(0, kMaxCount));
    s.finish();
  }
  if (const json* u = r.object("run")) {
    ConfigReader s(*u, where + ".run");
    s.get("output_dir", c.run.output_dir);
    s.get("checkpoint_every", c.run.checkpoint_every, closed(0, kMaxCount));
    s.get("keep_last", c.run.keep_last, closed(1, kMaxCount));
    s.get("log_every", c.run.log_every, closed(1, kMaxCount));
    s.get("stop_after_steps", c.run.stop_after_steps, closed(0, kMaxCount));
    s.get("tensorboard", c.run.tensorboard);
    s.get("tensorboard_flush_secs", c.run.tensorboard_flush_secs, closed(0, 86400));
    s.finish();
    POLAR_CHECK(!c.run.output_dir.empty(), s.path("output_dir"), ": must not be empty");
    POLAR_CHECK(c.run.keep_last >= 1, s.path("keep_last"), ": must be at least 1");
    POLAR_CHECK(c.run.log_every >= 1, s.path("log_every"), ": must be at least 1");
  }
  r.finish();
  return c;
}

json TrainConfig::to_json() const {
  json model = this->model.shape.to_json();
  model["init_from"] = this->model.init_from;
  model["shape_from"] = this->model.shape_from;
  model["tokenizer"] = this->model.tokenizer;
  model["init_seed"] = this->model.init_seed;
  model["reset_head"] = this->model.reset_head;
  model["zero_head"] = this->model.zero_head;
  if (this->model.lora.enabled()) model["lora"] = this->model.lora.to_json();
  const auto& t = train;
  return json{
      {"stage", stage},
      {"model", model},
      {"data",
       {{"train", data.train},
        {"eval", data.eval},
        {"row_tokens", data.row_tokens},
        {"micro_batch_tokens", data.micro_batch_tokens},
        {"shared_prefix", data.shared_prefix}}},
      {"loss",
       {{"margin", loss.margin}, {"center_coef", loss.center_coef}, {"reward_l2", loss.reward_l2}}},
      {"train",
       {{"steps", t.steps},
        {"epochs", t.epochs},
        {"batch_groups", t.batch_groups},
        {"lr", t.lr},
        {"min_lr_ratio", t.min_lr_ratio},
        {"warmup_ratio", t.warmup_ratio},
        {"warmup_steps", t.warmup_steps},
        {"weight_decay", t.weight_decay},
        {"head_lr_scale", t.head_lr_scale},
        {"probe_steps", t.probe_steps},
        {"beta1", t.beta1},
        {"beta2", t.beta2},
        {"eps", t.eps},
        {"grad_clip", t.grad_clip},
        {"seed", t.seed},
        {"device", t.device},
        {"precision", t.precision},
        {"max_bad_steps", t.max_bad_steps},
        {"threads", t.threads},
        {"fused_kernels", t.fused_kernels},
        {"attention", t.attention},
        {"dist_timeout_s", t.dist_timeout_s},
        {"zero", t.zero},
        {"activation_checkpointing", t.activation_checkpointing},
        {"activation_checkpointing_k", t.activation_checkpointing_k},
        {"offload_optimizer", t.offload_optimizer},
        {"param_dtype", t.param_dtype}}},
      {"eval", {{"every", eval.every}, {"max_groups", eval.max_groups}}},
      {"run",
       {{"output_dir", run.output_dir},
        {"checkpoint_every", run.checkpoint_every},
        {"keep_last", run.keep_last},
        {"log_every", run.log_every},
        {"stop_after_steps", run.stop_after_steps},
        {"tensorboard", run.tensorboard},
        {"tensorboard_flush_secs", run.tensorboard_flush_secs}}},
  };
}

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides) {
  json j = read_json_file(path);
  POLAR_CHECK(j.is_object(), path, ": expected a JSON object at the top level, got ",
              j.type_name());
  for (const auto& o : overrides) apply_override(j, o);
  return TrainConfig::from_json(j, path);
}

int64_t activation_checkpoint_interval(const TrainSection& t) {
  if (t.activation_checkpointing == "blocks") return 1;
  if (t.activation_checkpointing == "every_k") return t.activation_checkpointing_k;
  return 0;
}

double learning_rate_at(const TrainSection& t, int64_t step) {
  int64_t warmup = t.warmup_steps >= 0
                       ? t.warmup_steps
                       : static_cast<int64_t>(std::llround(t.warmup_ratio * t.steps));
  if (warmup > 0 && step < warmup)
    return t.lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  int64_t decay_steps = std::max<int64_t>(1, t.steps - warmup);
  double progress =
      std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(decay_steps));
  double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return t.lr * (t.min_lr_ratio + (1.0 - t.min_lr_ratio) * cosine);
}

}  // namespace polar
