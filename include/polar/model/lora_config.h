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

#include "polar/common/config_schema.h"

namespace polar {

struct ModelConfig;

// q, k, v, o, gate, up or down. The model keeps q/k/v as separate projections for every family
// (InternLM2's wqkv is split at import).
bool is_lora_target(const std::string& name);

// clang-format off
#define POLAR_LORA_INITS(X) \
  X(Kaiming, "kaiming", "A ~ kaiming_uniform(a = sqrt(5)), as peft") \
  X(Gaussian, "gaussian", "A ~ N(0, 1 / rank)")
POLAR_CONFIG_ENUM(LoraInit, POLAR_LORA_INITS)

#define POLAR_LORA_KEYS(KEY) \
  KEY(int64_t, rank, 0, closed(0, 65536), "", "adapter rank; 0: LoRA off (full fine-tuning)") \
  KEY(double, alpha, 16.0, above(0, 1e6), "", "the adapters' output is scaled by alpha / rank") \
  KEY(double, dropout, 0.0, below(0, 1), "", "dropout on the adapter's input only (peft's lora_dropout)") \
  KEY(StringList, targets, (StringList{"q", "k", "v", "o", "gate", "up", "down"}), list_of(is_lora_target, "q, k, v, o, gate, up or down"), "", "the blocks' linear layers that get adapters") \
  KEY(LoraInit, init, LoraInit::Kaiming, any(), "", "initialisation of A (B starts at zero)") \
  KEY(bool, train_norms, false, any(), "", "the RMSNorm weights train too (fp32)")
// clang-format on

struct LoraConfig {
  POLAR_CONFIG_KEYS(POLAR_LORA_KEYS)

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
