// Adapter tables between polar's parameter names (Hugging Face Llama names, see
// model/reward_model.h) and the tensor layouts of Hugging Face checkpoints, one per model family
// (model/family.h; families may share a table):
//   Llama/Qwen2/Qwen3: the same names (Qwen3 adds self_attn.q_norm/k_norm); the head is
//   score.weight (sequence classification) or
//                lm_head.weight (causal LM, dropped on import).
//   InternLM2:   model.tok_embeddings, attention.wqkv (packed), attention.wo,
//                feed_forward.w1/w3/w2, attention_norm, ffn_norm, model.norm; head v_head.weight
//                (reward model) or output.weight (causal LM).
// InternLM2's wqkv is (num_kv_heads * (g + 2) * head_dim, hidden) with g = num_heads /
// num_kv_heads, grouped per kv head as [q_1 .. q_g, k, v]: query head h*g + j reads kv head h, as
// in repeat_kv.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "polar/model/config.h"
#include "polar/model/family.h"

namespace polar::io::hf {

// One renamed tensor: the name in the HF layout and the polar parameter it holds, unchanged.
struct NameRule {
  const char* hf;
  const char* polar;
};

struct LayoutTable {
  const char* name;                  // for messages: "Llama"
  std::vector<NameRule> globals;     // outside the layers
  std::vector<NameRule> layer;       // under "model.layers.{i}."
  std::vector<NameRule> qkv_bias;    // under "model.layers.{i}.", only for models with q/k/v biases
  std::vector<NameRule> qk_norm;     // under "model.layers.{i}.", only for models with q/k norms
  const char* packed_qkv = nullptr;  // InternLM2 "attention.wqkv" (.weight, and .bias with biases)
  const char* o_bias;                // output-projection bias: polar has none, so it must be zero
  const char* reward_head;           // (1, hidden)
  const char* lm_head;               // (vocab, hidden), dropped on import
};

// The tensor layout of `family`; throws when the family has none.
const LayoutTable& layout_table(ModelFamily family);

// Packs per-head rows (dim 0) of q (Hq*D, ...), k and v (Hkv*D, ...) into the InternLM2 order.
torch::Tensor pack_wqkv(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        int64_t num_heads, int64_t num_kv_heads);
// The inverse: {q, k, v}. Throws when dim 0 is not num_kv_heads * (g + 2) * head_dim.
std::vector<torch::Tensor> unpack_wqkv(const torch::Tensor& wqkv, int64_t num_heads,
                                       int64_t num_kv_heads, int64_t head_dim,
                                       const std::string& what);

// HF tensors -> polar parameters (name -> tensor). Entries used are erased from `hf`, so what
// is left afterwards was not consumed. Throws naming the first missing tensor (`where` is the
// directory). The reward head is taken when `with_head`; an output bias must be all zero.
std::map<std::string, torch::Tensor> hf_to_polar(ModelFamily family, const ModelConfig& shape,
                                                 std::map<std::string, torch::Tensor>& hf,
                                                 bool with_head, const std::string& where);

// Polar parameters -> HF tensors in checkpoint order (embeddings, layers, norm, head). InternLM2
// with q/k/v biases also gets zero wo biases, since its config has one switch for both.
std::vector<std::pair<std::string, torch::Tensor>> polar_to_hf(
    ModelFamily family, const ModelConfig& shape,
    const std::map<std::string, torch::Tensor>& polar);

}  // namespace polar::io::hf
