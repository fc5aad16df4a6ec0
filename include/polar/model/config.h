// ModelConfig: the shape of a Llama-family decoder with a reward head. Saved as "model" in a
// checkpoint's config.json; a checkpoint's shape always comes from there, never from flags.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

#include "polar/common/config_schema.h"

namespace polar {

struct FamilyInfo;

// Shape bounds: generous for real models (256k vocabularies, 16k hidden sizes, 1M contexts), yet
// small enough that counts and byte sizes cannot overflow and a typo is not taken for a shape.
inline constexpr double kMaxVocab = 16777216;        // 2^24
inline constexpr double kMaxHidden = 65536;          // 2^16
inline constexpr double kMaxIntermediate = 1048576;  // 2^20
inline constexpr double kMaxPositionBound = 16777216;

// RoPE frequency scaling (Hugging Face rope_type).
// clang-format off
#define POLAR_ROPE_TYPES(X) \
  X(Linear, "linear", "positions divided by rope_scaling (1: plain RoPE, Hugging Face's default)") \
  X(Llama3, "llama3", "Llama 3.1's: long wavelengths divided by rope_scaling, short ones kept, a smooth ramp between")
POLAR_CONFIG_ENUM(RopeType, POLAR_ROPE_TYPES)

// The shape keys: the "model" section of a config and of a checkpoint's config.json.
#define POLAR_MODEL_SHAPE_KEYS(KEY) \
  KEY(std::string, architecture, "llama", any(), "", "the model family (docs/model_families.md): llama, qwen2, qwen3 or internlm2") \
  KEY(int64_t, vocab_size, 512, closed(1, kMaxVocab), "tokens", "embedding rows; left out: the tokenizer's vocabulary size") \
  KEY(int64_t, hidden_size, 64, closed(1, kMaxHidden), "", "model width") \
  KEY(int64_t, num_layers, 2, closed(1, 1024), "", "decoder blocks") \
  KEY(int64_t, num_heads, 4, closed(1, 1024), "", "attention heads") \
  KEY(int64_t, num_kv_heads, 4, closed(1, 1024), "", "key/value heads (grouped-query attention when < num_heads)") \
  KEY(int64_t, intermediate_size, 172, closed(1, kMaxIntermediate), "", "MLP width") \
  KEY(int64_t, max_position, 4096, closed(16, kMaxPositionBound), "tokens", "longest sequence the positions cover") \
  KEY(int64_t, head_dim, 0, closed(0, kMaxHidden), "", "width of one attention head; 0: hidden_size / num_heads (Qwen3 states its own)") \
  KEY(double, rope_theta, 10000.0, above(0, 1e12), "", "RoPE base") \
  KEY(RopeType, rope_type, RopeType::Linear, any(), "", "RoPE frequency scaling") \
  KEY(double, rope_scaling, 1.0, above(0, 1e4), "", "the factor of rope_type (1 with linear: no scaling)") \
  KEY(double, rope_low_freq_factor, 1.0, above(0, 1e4), "", "llama3: wavelengths above rope_original_max_position / this are divided by the factor") \
  KEY(double, rope_high_freq_factor, 4.0, above(0, 1e4), "", "llama3: wavelengths below rope_original_max_position / this are kept") \
  KEY(int64_t, rope_original_max_position, 8192, closed(1, kMaxPositionBound), "tokens", "llama3: the context the base model was trained at") \
  KEY(double, rms_eps, 1e-6, above(0, 1), "", "RMSNorm epsilon") \
  KEY(bool, qkv_bias, false, any(), "", "biases on q/k/v (Qwen2)") \
  KEY(bool, tie_embeddings, false, any(), "", "kept for import/export fidelity (a reward model has no LM head)") \
  KEY(double, init_std, 0.02, closed(0, 10), "", "standard deviation of the initial weights")
// clang-format on

struct ModelConfig {
  POLAR_CONFIG_KEYS(POLAR_MODEL_SHAPE_KEYS)

  // The width of one attention head: head_dim, or hidden_size / num_heads when it is 0.
  int64_t head_size() const { return head_dim > 0 ? head_dim : hidden_size / num_heads; }
  int64_t q_size() const { return num_heads * head_size(); }  // q_proj rows, o_proj columns
  bool qk_norm() const;  // per-head RMSNorm of q and k before RoPE (the family's, e.g. Qwen3)
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
