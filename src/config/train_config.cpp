#include "polar/config/train_config.h"

#include <cmath>

#include "polar/common/config_visitors.h"
#include "polar/common/json_config.h"

namespace polar {

using nlohmann::json;

bool is_device_name(const std::string& name) {
  if (name == "auto" || name == "cpu" || name == "cuda") return true;
  if (name.rfind("cuda:", 0) != 0 || name.size() == 5 || name.size() > 9) return false;
  for (size_t i = 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  return true;
}

namespace {

// True when the config's "model" object sets any shape key (else the shape may come from
// init_from or shape_from).
bool has_shape_key(const json& j) {
  auto it = j.find("model");
  if (it == j.end() || !it->is_object()) return false;
  for (const KeyDoc& d : SchemaDocs::collect(ModelConfig{}))
    if (it->contains(d.path)) return true;
  return false;
}

}  // namespace

TrainConfig TrainConfig::from_json(const json& j, const std::string& where) {
  TrainConfig c;
  json body = j;
  // A LoRA checkpoint's config.json records its base (checkpoint/lora_checkpoint.h), which that
  // loader checks; informational here.
  if (body.is_object()) body.erase("lora_base");
  SchemaReader(body, where).read(c);
  c.model.shape_given = has_shape_key(j);
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  return c;
}

json TrainConfig::to_json() const {
  json j = SchemaWriter::write(*this);
  if (tokenizer_fingerprint.empty()) j.erase("tokenizer_fingerprint");  // set by checkpoints only
  if (!model.lora.enabled()) j["model"].erase("lora");  // configs without LoRA read as before
  return j;
}

void TrainConfig::validate() const {
  model.shape.validate();
  POLAR_CHECK(!(model.reset_head && model.zero_head),
              "model.reset_head and model.zero_head are both true: choose one way to start the "
              "reward head");
  const auto& t = train;
  POLAR_CHECK(!t.offload_optimizer || t.zero >= 1,
              "train.offload_optimizer: needs train.zero 1 or 2 (the offloaded optimizer is the "
              "sharded one; with one process its shard is everything)");
  POLAR_CHECK(t.probe_steps < t.steps,
              "train.probe_steps: expected 0 <= probe_steps < train.steps (", t.steps, "), got ",
              t.probe_steps);
  POLAR_CHECK(t.param_dtype == Precision::Fp32 || (t.zero == 2 && t.precision == Precision::Bf16),
              "train.param_dtype: bf16 weights need train.zero 2 (fp32 master weights and "
              "gradient accumulation in the shard) and train.precision bf16");
  const LoraConfig& l = model.lora;
  if (l.enabled()) {
    POLAR_CHECK(t.param_dtype == Precision::Fp32,
                "train.param_dtype: must be fp32 with model.lora (the frozen base is held in the "
                "compute dtype already; the adapters keep fp32 weights)");
    POLAR_CHECK(l.dropout == 0 || t.activation_checkpointing == ActivationCheckpointing::None,
                "model.lora.dropout: must be 0 with train.activation_checkpointing (the "
                "recompute would draw other dropout masks than the forward); set one of them off");
  }
}

const std::vector<KeyDoc>& train_config_keys() {
  static const std::vector<KeyDoc> keys = SchemaDocs::collect(TrainConfig{});
  return keys;
}

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides) {
  json j = read_json_file(path);
  POLAR_CHECK(j.is_object(), path, ": expected a JSON object at the top level, got ",
              j.type_name());
  for (const auto& o : overrides) apply_schema_override(j, o, train_config_keys());
  return TrainConfig::from_json(j, path);
}

int64_t activation_checkpoint_interval(const TrainSection& t) {
  switch (t.activation_checkpointing) {
    case ActivationCheckpointing::Blocks:
      return 1;
    case ActivationCheckpointing::EveryK:
      return t.activation_checkpointing_k;
    case ActivationCheckpointing::None:
      break;
  }
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
