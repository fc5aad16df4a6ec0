// ModelConfig: the shape of a Llama-family decoder with a reward head. Saved as "model" in a
// checkpoint's config.json; a checkpoint's shape always comes from there, never from flags.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

namespace polar {

struct FamilyInfo;

struct ModelConfig {
  std::string architecture =
      "llama";  // the model family (model/family.h): llama | qwen2 | internlm2
  int64_t vocab_size = 512;
  int64_t hidden_size = 64;
  int64_t num_layers = 2;
  int64_t num_heads = 4;
  int64_t num_kv_heads = 4;  // grouped-query attention when < num_heads
  int64_t intermediate_size = 172;
  int64_t max_position = 4096;
  double rope_theta = 10000.0;
  double rope_scaling = 1.0;  // linear RoPE scaling factor (positions divided by it)
  double rms_eps = 1e-6;
  bool qkv_bias = false;        // Qwen2 has biases on q/k/v
  bool tie_embeddings = false;  // a reward model has no LM head; kept for import/export fidelity
  double init_std = 0.02;

  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t num_parameters() const;  // exact count of the module's parameters
  // Forward FLOPs per token for a sequence of length `seq_len` (matmuls + attention scores).
  double flops_per_token(int64_t seq_len) const;
  void validate() const;             // throws polar::Error naming the bad field
  const FamilyInfo& family() const;  // the registry entry of `architecture`; throws when unknown

  static ModelConfig from_json(const nlohmann::json& j, const std::string& where);
  nlohmann::json to_json() const;
};

// Refuses, before anything is allocated, a shape whose parameters need more bytes than the
// machine has: `bytes_per_parameter` is 4 for fp32 weights, 16 for training (weights, gradients,
// two AdamW moments). `what` names the use ("the weights", "training"). The message names the
// keys of the largest part of the model.
void check_model_memory(const ModelConfig& shape, double bytes_per_parameter,
                        const std::string& what);

// Physical memory of this machine in bytes; the environment variable POLAR_MEMORY_BYTES
// overrides it (for tests and for machines whose limit is lower than their RAM).
double machine_memory_bytes();

}  // namespace polar
