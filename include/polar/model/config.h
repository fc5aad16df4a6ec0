// ModelConfig: the shape of a Llama-family decoder with a reward head. Saved as "model" in a
// checkpoint's config.json; a checkpoint's shape always comes from there, never from flags.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

namespace polar {

struct FamilyInfo;

// RoPE frequency scaling (Hugging Face rope_type). Linear: positions divided by the factor
// (factor 1 is plain RoPE, HF's "default"). Llama3: Llama 3.1's, long wavelengths divided by the
// factor, short ones kept, a smooth ramp between.
enum class RopeType { Linear, Llama3 };

struct ModelConfig {
  std::string architecture =
      "llama";  // the model family (model/family.h): llama | qwen2 | qwen3 | internlm2
  int64_t vocab_size = 512;
  int64_t hidden_size = 64;
  int64_t num_layers = 2;
  int64_t num_heads = 4;
  int64_t num_kv_heads = 4;  // grouped-query attention when < num_heads
  int64_t intermediate_size = 172;
  int64_t max_position = 4096;
  // Width of one attention head; 0: hidden_size / num_heads (Qwen3 states its own).
  int64_t attention_head_dim = 0;
  double rope_theta = 10000.0;
  RopeType rope_type = RopeType::Linear;
  double rope_scaling = 1.0;  // the factor of rope_type (1 with Linear: no scaling)
  // llama3 only: wavelengths above original_max_position / low_freq_factor are divided by the
  // factor, those below original_max_position / high_freq_factor are kept.
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position = 8192;
  double rms_eps = 1e-6;
  bool qkv_bias = false;        // Qwen2 has biases on q/k/v
  bool tie_embeddings = false;  // a reward model has no LM head; kept for import/export fidelity
  double init_std = 0.02;

  int64_t head_dim() const {
    return attention_head_dim > 0 ? attention_head_dim : hidden_size / num_heads;
  }
  int64_t q_size() const { return num_heads * head_dim(); }  // q_proj rows, o_proj columns
  bool qk_norm() const;  // per-head RMSNorm of q and k before RoPE (the family's, e.g. Qwen3)
  int64_t num_parameters() const;  // exact count of the module's parameters
  // Forward FLOPs per token for a sequence of length `seq_len` (matmuls + attention scores).
  double flops_per_token(int64_t seq_len) const;
  void validate() const;             // throws polar::Error naming the bad field
  const FamilyInfo& family() const;  // the registry entry of `architecture`; throws when unknown

  static ModelConfig from_json(const nlohmann::json& j, const std::string& where);
  nlohmann::json to_json() const;
};

// "linear" | "llama3", and back; parse_rope_type throws naming `where` and the choices.
const char* rope_type_name(RopeType type);
RopeType parse_rope_type(const std::string& name, const std::string& where);

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
