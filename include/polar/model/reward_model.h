// RewardModel: Llama-family decoder (RMSNorm, RoPE with linear or llama3 scaling, SwiGLU,
// grouped-query attention, optional qkv bias, Qwen3's q/k norm) and a bias-free linear reward
// head read at each sequence's reward token. The same layers serve the sampler's causal LM
// through decode() and a KV cache.
// Parameter names follow Hugging Face's LlamaForSequenceClassification:
//   model.embed_tokens.weight, model.layers.{i}.self_attn.{q,k,v,o}_proj.{weight,bias},
//   model.layers.{i}.self_attn.{q,k}_norm.weight (Qwen3),
//   model.layers.{i}.mlp.{gate,up,down}_proj.weight, model.layers.{i}.input_layernorm.weight,
//   model.layers.{i}.post_attention_layernorm.weight, model.norm.weight, score.weight (1, H).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <vector>

#include "polar/model/config.h"

namespace polar {

struct AttentionLayout;
struct PackedBatch;

// How attention is computed. Math: SDPA with a dense mask over each packed row, built from
// segments and context (works everywhere; the reference). Varlen: flash attention over the
// sequence blocks (CUDA bf16/fp16 only). Blocks: the same blocks, length-bucketed into a few
// padded SDPA calls, only within each sequence (any device). Auto: Varlen where available, Blocks
// on the CPU, else Math.
enum class AttentionImpl { Math, Varlen, Blocks, Auto };

// Keys (after RoPE) and values of every layer for incremental decoding,
// (B, num_kv_heads, capacity, head_dim) each, filled up to `length`.
struct KvCache {
  std::vector<torch::Tensor> keys, values;
  int64_t length = 0;
  int64_t capacity() const { return keys.empty() ? 0 : keys[0].size(2); }
};

class RewardModelImpl : public torch::nn::Module {
 public:
  // `initialize` false leaves the weights unset (call reset_parameters, e.g. after moving the
  // model to a GPU, or load them): a large model then skips drawing its weights on the CPU.
  explicit RewardModelImpl(const ModelConfig& config, bool initialize = true);

  // Hidden states of the last layer, *before* the final RMSNorm: (B, T, H). context (B, T),
  // optional: the segment id of the shared prefix a token also attends to (0: none); see
  // polar/data/attention_layout.h.
  torch::Tensor backbone(const torch::Tensor& tokens, const torch::Tensor& positions,
                         const torch::Tensor& segments, const torch::Tensor& context = {});
  // The same for a packed batch, with the attention layout its packer computed (nothing is
  // derived from the ids on the device, so nothing is read back).
  torch::Tensor backbone(const PackedBatch& batch);
  // Reward head: gathers rows reward_index of hidden (B*T, H), applies the final RMSNorm
  // (model.norm.weight) and score.weight: rewards (N). RMSNorm is per token, so norming only
  // the gathered rows equals norming everything. kernels::reward_head (the fused CUDA kernel
  // when set_fused_head and on CUDA, else its LibTorch reference).
  torch::Tensor reward_head(const torch::Tensor& hidden_flat, const torch::Tensor& reward_index);
  // backbone + reward_head. Rewards (N) in float32 (float64 when the model is double).
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& positions,
                        const torch::Tensor& segments, const torch::Tensor& reward_index,
                        const torch::Tensor& context = {});
  torch::Tensor forward(const PackedBatch& batch);

  // Incremental decoding (the sampler's causal LM), no gradients: runs tokens (B, T) at RoPE
  // positions (B, T) through the same layers, appending each layer's keys and values to `cache`
  // at cache.length, and returns the hidden states (B, T, H) before the final RMSNorm.
  // key_mask (B, cache.length + T) bool is true at real (non-padding) keys; a query sees the
  // real keys up to itself, and itself.
  torch::Tensor decode(const torch::Tensor& tokens, const torch::Tensor& positions,
                       const torch::Tensor& key_mask, KvCache& cache) const;
  KvCache new_cache(int64_t batch, int64_t capacity) const;
  // model.norm over hidden states (..., H): what an LM head reads.
  torch::Tensor final_norm(const torch::Tensor& hidden) const;

  const ModelConfig& config() const { return config_; }
  // normal(0, init_std) for matrices, ones for norms, zeros for biases. Drawn on the CPU in fp32
  // by default, so the values do not depend on device or dtype; `on_device` draws on each
  // parameter's device instead (fast for a large model on a GPU, values device-dependent).
  void reset_parameters(uint64_t seed, bool on_device = false);
  void reset_reward_head(uint64_t seed);
  void zero_reward_head();  // every reward starts at 0
  void set_attention_impl(AttentionImpl impl) { attention_impl_ = impl; }
  // The attention a forward on `device` with activations in `dtype` runs when `requested`:
  // Auto takes varlen flash when usable, else per-sequence blocks on the CPU, else the dense
  // mask; Varlen throws when unusable; Math and Blocks are taken as asked. The one rule for
  // training (which chooses once per run and sets the result), evaluation and serving.
  AttentionImpl choose_attention(AttentionImpl requested, const torch::Device& device,
                                 torch::ScalarType dtype) const;
  // Use the fused reward-head kernel (CUDA tensors only; CPU always takes the reference).
  void set_fused_head(bool on) { fused_head_ = on; }
  // Activation checkpointing: recompute layers in backward instead of keeping their activations.
  // Every layer (on), or every k-th one (layers 0, k, 2k, ...; k = 1 is every layer, 0 none).
  void set_activation_checkpointing(bool on) { checkpoint_every_ = on ? 1 : 0; }
  void set_activation_checkpointing_every(int64_t k) { checkpoint_every_ = k; }
  // Stores the weight matrices (embedding, projections) in `dtype`; norms and the reward head
  // keep theirs. Call before gradients are hooked (a dtype change resets autograd's
  // accumulators). Returns the number of tensors cast.
  int64_t set_matrix_dtype(torch::Dtype dtype);

 private:
  struct Layer;
  AttentionImpl resolve_attention(const torch::Device& device) const;
  // layout: the blocks of segments/context, or null to derive them here.
  torch::Tensor run_backbone(const torch::Tensor& tokens, const torch::Tensor& positions,
                             const torch::Tensor& segments, const torch::Tensor& context,
                             const AttentionLayout* layout);
  ModelConfig config_;
  AttentionImpl attention_impl_ = AttentionImpl::Auto;
  int64_t checkpoint_every_ = 0;
  bool fused_head_ = true;
  torch::Tensor embed_tokens_;  // alias of model.embed_tokens.weight
  torch::Tensor norm_weight_;   // alias of model.norm.weight
  torch::Tensor score_weight_;  // alias of score.weight
  std::vector<std::shared_ptr<torch::nn::Module>> layers_;
};
TORCH_MODULE(RewardModel);

}  // namespace polar
