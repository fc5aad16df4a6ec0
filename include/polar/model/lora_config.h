// LoraConfig: the "model.lora" section of a training config. Low-rank adapters (LoRA) on the
// decoder blocks' linear layers: y = W x + (alpha / rank) * B A dropout(x), with A (rank, in)
// Kaiming-uniform and B (out, rank) zero at the start (as peft does), so training starts from
// the base model exactly. The base weights are frozen; the adapters, the reward head and
// optionally the norms train. No LibTorch here: the config layer includes this header.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace polar {

struct ModelConfig;

struct LoraConfig {
  int64_t rank = 0;  // 0: LoRA off (full fine-tuning)
  double alpha = 16.0;
  double dropout = 0.0;  // on the adapter's input only, as peft's lora_dropout
  // Any of q, k, v, o, gate, up, down (every linear layer of the blocks by default). The model
  // keeps q/k/v as separate projections for every family (InternLM2's wqkv is split at import).
  std::vector<std::string> targets = {"q", "k", "v", "o", "gate", "up", "down"};
  std::string init = "kaiming";  // kaiming: A ~ kaiming_uniform(a = sqrt(5)) | gaussian: N(0, 1/r)
  bool train_norms = false;      // the RMSNorm weights train too (fp32)

  bool enabled() const { return rank > 0; }
  double scale() const { return alpha / static_cast<double>(rank); }
  // Adapter parameters on a model of `shape` (rank x (in + out) per adapted layer).
  int64_t adapter_parameters(const ModelConfig& shape) const;
  // What trains: the adapters, the reward head and (train_norms) the norms.
  int64_t trainable_parameters(const ModelConfig& shape) const;
  // The Hugging Face module name of a target ("q" -> "q_proj").
  static std::string module_name(const std::string& target);

  // Reads the section at `where` ("model.lora"), unknown keys and bad values refused by name.
  static LoraConfig from_json(const nlohmann::json& j, const std::string& where);
  nlohmann::json to_json() const;
};

}  // namespace polar
