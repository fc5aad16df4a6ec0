// CausalLM: a Hugging Face causal language model (LlamaForCausalLM,
// Qwen2ForCausalLM, Qwen3ForCausalLM, InternLM2ForCausalLM) for generation. The
// decoder is the reward model (imported by io/hf), run through
// RewardModel::decode with a KV cache per layer: the same layers and numerics
// as scoring. The LM head is read beside it (lm_head.weight / output.weight, or
// the embedding when tie_word_embeddings).
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "polar/model/reward_model.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar::sample {

using polar::KvCache;  // model/reward_model.h

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
  RewardModel decoder_{nullptr};
  torch::Tensor lm_head_;
  Tokenizer tokenizer_;
};

}  // namespace polar::sample
