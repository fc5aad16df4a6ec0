// LoRA on the reward model's linear layers (configuration: model/lora_config.h).
//   add_lora      attaches adapters to the targeted projections of every block and freezes
//                 the base: only the adapters, the reward head (score.weight) and, with
//                 train_norms, the RMSNorm weights keep requires_grad.
//   merge_lora    folds W += (alpha / rank) * B A into the base and removes the adapters.
// Adapter parameters are named as peft names them on a Llama, without its adapter name:
//   model.layers.{i}.self_attn.q_proj.lora_A.weight (rank, in), ...lora_B.weight (out, rank).
// A LoRA checkpoint holds the trainable parameters only and names its base by the base's
// fingerprint (base_fingerprint), so a base that changed is refused at load.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "polar/model/lora_config.h"

namespace polar {

// The adapter of one linear layer; A and B alias the host's lora_A.weight and lora_B.weight.
class LoraAdapter {
 public:
  // Registers lora_A and lora_B on `host` (fp32, on `like`'s device; B zero, A per config.init).
  LoraAdapter(torch::nn::Module& host, const torch::Tensor& like, const LoraConfig& config,
              uint64_t seed);
  // y + scale * B(A(dropout(x))): peft's LoRA Linear forward, in the same order of operations.
  torch::Tensor apply(const torch::Tensor& x, const torch::Tensor& y, bool training) const;
  // scale * B A (out, in) in fp32: what merge_lora adds to the base weight.
  torch::Tensor delta_weight() const;

  torch::Tensor A, B;
  double scale, dropout;
};

// A linear layer LoRA can adapt: the reward model's projections implement it (`lora` unset:
// the plain linear map).
struct LoraHost {
  virtual ~LoraHost() = default;
  virtual torch::Tensor& lora_base_weight() = 0;  // (out, in)
  std::shared_ptr<LoraAdapter> lora;
};

// Attaches adapters to every targeted projection (by module name, e.g. "...self_attn.q_proj"),
// A drawn from `seed` (on the CPU, so values do not depend on the device), and freezes every
// other parameter except score.weight (and the norms with train_norms). Returns the number of
// adapted layers. Throws when the model already has adapters or a target matches nothing.
int64_t add_lora(torch::nn::Module& model, const LoraConfig& config, uint64_t seed);

bool has_lora(const torch::nn::Module& model);
bool is_lora_parameter(const std::string& name);  // ".lora_A." or ".lora_B." in the name

// W += scale * B A (computed in fp32, stored in W's dtype), then removes the adapters and makes
// every parameter trainable again: the result is a plain model that exports like any other.
void merge_lora(torch::nn::Module& model);

// Casts the frozen matrices (embedding, projections) to `dtype`; adapters, head and norms keep
// theirs. Returns how many were cast. For the compute dtype on the device (no master copy).
int64_t cast_frozen_matrices(torch::nn::Module& model, torch::Dtype dtype);

// The parameters a checkpoint holds: the trainable ones (requires_grad) of a LoRA model, every
// one of a plain model.
std::vector<std::pair<std::string, torch::Tensor>> checkpoint_parameters(
    const torch::nn::Module& model);

// A 64-bit hash (16 hex digits) of every non-adapter parameter's name, shape and fp32 values:
// identifies the base the adapters were trained on, whatever file format it was read from.
std::string base_fingerprint(const torch::nn::Module& model);

}  // namespace polar
