// CausalLM: a Hugging Face causal language model (LlamaForCausalLM,
// Qwen2ForCausalLM, InternLM2ForCausalLM) for generation. The decoder is the
// reward model's (imported by io/hf, same parameters and names); the LM head is
// read beside it (lm_head.weight / output.weight, or the embedding when
// tie_word_embeddings). Incremental decoding keeps a KV cache per layer.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "polar/model/reward_model.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar::sample {

// Keys and values of every layer, (B, num_kv_heads, capacity, head_dim), filled
// up to `length`.
struct KvCache {
  std::vector<torch::Tensor> keys, values;
  int64_t length = 0;
  int64_t capacity() const { return keys.empty() ? 0 : keys[0].size(2); }
};

struct CausalLMOptions {
  std::string tokenizer_dir;   // instead of the directory's tokenizer.model
  std::string device = "cpu";  // cpu | cuda | cuda:N
  std::string dtype = "fp32";  // fp32 | bf16 | fp16
};

class CausalLM {
 public:
  // Imports `dir`; throws polar::Error naming the directory and what is wrong.
  static CausalLM load(const std::string& dir, const CausalLMOptions& options);
  // A decoder and an LM head (vocab, hidden) in the decoder's dtype and device.
  CausalLM(RewardModel decoder, torch::Tensor lm_head, Tokenizer tokenizer);

  KvCache new_cache(int64_t batch, int64_t capacity) const;
  // Appends tokens (B, T) at cache.length. positions (B, T) are the RoPE
  // positions; key_mask (B, cache.length + T) bool is true at real
  // (non-padding) tokens. Returns the float32 logits of the last position (B,
  // vocab).
  torch::Tensor step(const torch::Tensor& tokens, const torch::Tensor& positions,
                     const torch::Tensor& key_mask, KvCache& cache) const;

  const ModelConfig& config() const { return decoder_->config(); }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  torch::Device device() const { return lm_head_.device(); }

 private:
  struct LayerWeights {
    torch::Tensor q, k, v, o, q_bias, k_bias, v_bias, gate, up, down, input_norm, post_norm;
  };
  torch::Tensor layer_forward(const LayerWeights& w, const torch::Tensor& x,
                              const torch::Tensor& cos, const torch::Tensor& sin,
                              const torch::Tensor& mask, KvCache& cache, size_t layer) const;

  RewardModel decoder_{nullptr};
  torch::Tensor lm_head_, embed_, final_norm_;
  std::vector<LayerWeights> layers_;
  Tokenizer tokenizer_;
};

}  // namespace polar::sample
