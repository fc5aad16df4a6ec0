// LoRA checkpoints (model/lora.h): model.safetensors holds the adapters, the reward head and
// (with train_norms) the norms only; config.json's "model.lora" holds the adapter settings and
// its "lora_base" names the frozen base:
//   "lora_base": {"path": "/abs/base/checkpoint", "fingerprint": "<16 hex digits>"}
// Loading reads the base, checks its fingerprint (model/lora.h base_fingerprint) and refuses a
// base that changed, naming both; then attaches the adapters and copies the saved tensors.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include <torch/types.h>

namespace polar {

struct LoadedModel;

struct LoraBase {
  std::string path;         // the base checkpoint (or Hugging Face directory), absolute
  std::string fingerprint;  // base_fingerprint of its weights as loaded on the CPU
  nlohmann::json to_json() const;
};

// The base recorded in a checkpoint's config.json; nullopt for a checkpoint without LoRA.
// Throws when model.lora is on but lora_base is missing or malformed (naming `where`).
std::optional<LoraBase> recorded_lora_base(const nlohmann::json& config, const std::string& where);

// Throws unless `fingerprint` (of the base as now loaded from `path`) is the recorded one.
// `what` names the checkpoint the record is from.
void check_lora_base(const LoraBase& recorded, const std::string& path,
                     const std::string& fingerprint, const std::string& what);

// Base + adapters from a LoRA checkpoint `dir` whose config.json is `config`, on `device`.
LoadedModel load_lora_model(const std::string& dir, const nlohmann::json& config,
                            const torch::Device& device, bool verify);

// Writes a peft adapter directory (adapter_config.json, adapter_model.safetensors with peft's
// key names, the reward head as modules_to_save) that peft loads onto the Hugging Face export
// of the base in `format` (auto | hf-llama: Llama and Qwen2 sequence classifiers; an InternLM2
// model exported as hf-llama works too; refuses the hf-internlm2 layout, whose wqkv is fused).
// Atomic; a non-empty `out_dir` is replaced only with `overwrite`.
void export_peft_adapter(const LoadedModel& model, const std::string& out_dir,
                         const std::string& format, bool overwrite);

}  // namespace polar
