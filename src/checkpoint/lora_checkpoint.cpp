// LoRA checkpoints: load base + adapters, and the peft adapter export (see lora_checkpoint.h).
#include "polar/checkpoint/lora_checkpoint.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "polar/checkpoint/checkpoint.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/common/staged_dir.h"
#include "polar/config/train_config.h"
#include "polar/io/safetensors.h"
#include "polar/model/family.h"
#include "polar/model/lora.h"

namespace fs = std::filesystem;

namespace polar {

using nlohmann::json;

namespace {

LoraConfig lora_of(const json& config, const std::string& where) {
  if (!config.is_object() || !config.contains("model") || !config["model"].is_object() ||
      !config["model"].contains("lora"))
    return {};
  return LoraConfig::from_json(config["model"]["lora"], where + ": model.lora");
}

}  // namespace

json LoraBase::to_json() const { return json{{"path", path}, {"fingerprint", fingerprint}}; }

std::optional<LoraBase> recorded_lora_base(const json& config, const std::string& where) {
  if (!lora_of(config, where).enabled()) return std::nullopt;
  POLAR_CHECK(config.contains("lora_base") && config["lora_base"].is_object(), where,
              ": model.lora is set but \"lora_base\" (the base checkpoint's path and "
              "fingerprint) is missing");
  LoraBase base;
  ConfigReader r(config["lora_base"], where + ": lora_base");
  r.get("path", base.path);
  r.get("fingerprint", base.fingerprint);
  r.finish();
  POLAR_CHECK(!base.path.empty() && !base.fingerprint.empty(), where,
              ": lora_base needs a non-empty path and fingerprint");
  return base;
}

void check_lora_base(const LoraBase& recorded, const std::string& path,
                     const std::string& fingerprint, const std::string& what) {
  POLAR_CHECK(fingerprint == recorded.fingerprint, what,
              ": the LoRA adapters were trained on the base ", recorded.path, " with fingerprint ",
              recorded.fingerprint, ", but the base ", path, " has fingerprint ", fingerprint,
              " (other weights); use the original base");
}

LoadedModel load_lora_model(const std::string& dir, const json& config, const torch::Device& device,
                            bool verify) {
  const std::string where = (fs::path(dir) / "config.json").string();
  const LoraConfig lora = lora_of(config, where);
  const std::optional<LoraBase> base = recorded_lora_base(config, where);
  POLAR_CHECK(base.has_value(), where, ": not a LoRA checkpoint");
  POLAR_CHECK(fs::exists(base->path), where, ": the LoRA base ", base->path,
              " (lora_base.path) does not exist");
  LoadedModel out = load_model(base->path, torch::kCPU, verify);
  check_lora_base(*base, base->path, base_fingerprint(*out.model), where);
  add_lora(*out.model, lora, 0);
  load_weights(out.model, dir, verify);  // the trainable tensors only (checkpoint_parameters)
  out.config = config;
  out.tokenizer = load_checkpoint_tokenizer(dir);
  out.model->to(device);
  return out;
}

void export_peft_adapter(const LoadedModel& lm, const std::string& out_dir,
                         const std::string& format, bool overwrite) {
  const json& config = lm.config;
  const LoraConfig lora = lora_of(config, "the checkpoint");
  POLAR_CHECK(lora.enabled() && has_lora(*lm.model),
              "--lora-only: the checkpoint has no LoRA adapters (model.lora)");
  const FamilyInfo& family = export_family(format, lm.shape);
  POLAR_CHECK(family.family != ModelFamily::InternLM2,
              "--lora-only: the hf-internlm2 layout fuses q/k/v into one wqkv matrix, which "
              "separate q/k/v adapters do not map onto; pass --format hf-llama (and load the "
              "adapter onto the hf-llama export of the base) or drop --lora-only for the merged "
              "model");
  POLAR_CHECK(overwrite || !fs::exists(out_dir) || fs::is_empty(out_dir), out_dir,
              ": exists and is not empty (pass --overwrite to replace it)");
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::vector<std::string> modules_to_save;
  for (const auto& [name, value] : checkpoint_parameters(*lm.model)) {
    tensors.emplace_back("base_model.model." + name, value.to(torch::kFloat));
    if (!is_lora_parameter(name)) {
      // The module's last name component ("score", "input_layernorm", "norm"): peft matches
      // modules_to_save by suffix.
      const std::string stem = name.substr(0, name.rfind('.'));
      const std::string module = stem.substr(stem.rfind('.') + 1);
      if (std::find(modules_to_save.begin(), modules_to_save.end(), module) ==
          modules_to_save.end())
        modules_to_save.push_back(module);
    }
  }
  std::vector<std::string> targets;
  for (const auto& t : lora.targets) targets.push_back(LoraConfig::module_name(t));
  const json adapter_config = {
      {"peft_type", "LORA"},
      {"task_type", "SEQ_CLS"},
      {"base_model_name_or_path",
       config.contains("lora_base") ? config["lora_base"].value("path", "") : std::string()},
      {"r", lora.rank},
      {"lora_alpha", lora.alpha},
      {"lora_dropout", lora.dropout},
      {"target_modules", targets},
      {"modules_to_save", modules_to_save},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"init_lora_weights", true},
      {"use_rslora", false},
      {"use_dora", false},
      {"inference_mode", true},
  };
  StagedDir staged(out_dir);
  io::save_safetensors((fs::path(staged.path()) / "adapter_model.safetensors").string(), tensors,
                       {{"format", "pt"}});
  write_json_file_atomic((fs::path(staged.path()) / "adapter_config.json").string(),
                         adapter_config);
  staged.commit();
  spdlog::info("wrote peft adapter {} (rank {}, {} tensors, modules_to_save {})", out_dir,
               lora.rank, tensors.size(), json(modules_to_save).dump());
}

}  // namespace polar
