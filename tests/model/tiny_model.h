// Test helpers: the tiny debug model shape and groups built from owned token vectors.
#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <deque>
#include <random>
#include <vector>

#include "polar/data/batch.h"
#include "polar/data/shards.h"
#include "polar/model/config.h"
#include "polar/model/reward_model.h"

namespace polar::testutil {

inline ModelConfig tiny_config(int64_t kv_heads = 2, bool qkv_bias = false) {
  ModelConfig c;
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = kv_heads;
  c.intermediate_size = 172;
  c.qkv_bias = qkv_bias;
  if (qkv_bias) c.architecture = "qwen2";
  return c;
}

// Qwen3: per-head q/k norms, and a head_dim (24) apart from hidden_size / num_heads (16).
inline ModelConfig tiny_qwen3_config(int64_t kv_heads = 2) {
  ModelConfig c = tiny_config(kv_heads);
  c.architecture = "qwen3";
  c.head_dim = 24;
  return c;
}

// Llama 3.1's llama3 RoPE scaling with a short original context, so the 8 frequencies of a
// 16-wide head fall on all three sides of the ramp (kept, smoothed, divided by the factor).
inline ModelConfig tiny_llama3_config(int64_t kv_heads = 2) {
  ModelConfig c = tiny_config(kv_heads);
  c.rope_theta = 5000.0;
  c.rope_type = RopeType::Llama3;
  c.rope_scaling = 8.0;
  c.rope_low_freq_factor = 1.0;
  c.rope_high_freq_factor = 4.0;
  c.rope_original_max_position = 64;
  return c;
}

// A model whose rewards are far from zero: the default init_std of 0.02 gives rewards and
// gradients so small that comparisons would pass for almost any bug. Biases get random values
// (they start at zero) so a dropped bias would show.
inline RewardModel tiny_model(const ModelConfig& config, uint64_t seed = 7,
                              double init_std = 0.15) {
  ModelConfig c = config;
  c.init_std = init_std;
  RewardModel model(c);
  model->reset_parameters(seed);
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed + 1);
  for (auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      p.value().copy_(torch::normal(0.0, 0.3, p.value().sizes(), gen, torch::kFloat));
    } else if (name.find("norm.weight") != std::string::npos) {
      p.value().copy_(torch::normal(1.0, 0.2, p.value().sizes(), gen, torch::kFloat));
    }
  }
  return model;
}

// Owns token storage so GroupRef spans stay valid (deque never moves its elements).
class GroupBuilder {
 public:
  explicit GroupBuilder(uint32_t seed = 1, int32_t vocab = 512) : rng_(seed), vocab_(vocab) {}

  // A group with a random prefix of `prefix_len` and random candidates of the given lengths.
  void add_random(int64_t prefix_len, const std::vector<int64_t>& candidate_lens,
                  int32_t category = 0) {
    std::vector<std::vector<int32_t>> candidates;
    for (int64_t len : candidate_lens) candidates.push_back(random_tokens(len));
    add(random_tokens(prefix_len), candidates, category);
  }

  void add(std::vector<int32_t> prefix, const std::vector<std::vector<int32_t>>& candidates,
           int32_t category = 0) {
    storage_.push_back(std::move(prefix));
    GroupRef group;
    group.prefix = span(storage_.back());
    for (const auto& c : candidates) {
      storage_.push_back(c);
      group.candidates.push_back(span(storage_.back()));
    }
    group.category = category;
    groups_.push_back(group);
  }

  std::vector<int32_t> random_tokens(int64_t n) {
    std::uniform_int_distribution<int32_t> dist(1, vocab_ - 1);
    std::vector<int32_t> out(n);
    for (auto& t : out) t = dist(rng_);
    return out;
  }

  const std::vector<GroupRef>& groups() const { return groups_; }
  std::vector<GroupRef> slice(int64_t begin, int64_t end) const {
    return {groups_.begin() + begin, groups_.begin() + end};
  }

 private:
  static TokenSpan span(const std::vector<int32_t>& v) {
    return TokenSpan{v.data(), static_cast<int64_t>(v.size())};
  }
  std::mt19937 rng_;
  int32_t vocab_;
  std::deque<std::vector<int32_t>> storage_;
  std::vector<GroupRef> groups_;
};

// The reward of one sequence run alone: batch of 1, no padding.
inline torch::Tensor reward_alone(RewardModel& model, const std::vector<int64_t>& tokens) {
  const auto n = static_cast<int64_t>(tokens.size());
  const torch::Tensor t = torch::tensor(tokens, torch::kInt64).view({1, n});
  const torch::Tensor positions = torch::arange(n, torch::kInt64).view({1, n});
  const torch::Tensor segments = torch::ones({1, n}, torch::kInt64);
  return model->forward(t, positions, segments, torch::full({1}, n - 1, torch::kInt64))[0];
}

// prefix ++ candidate as int64 tokens.
inline std::vector<int64_t> sequence_of(const GroupRef& g, size_t candidate) {
  std::vector<int64_t> out(g.prefix.data, g.prefix.data + g.prefix.size);
  const TokenSpan& c = g.candidates[candidate];
  out.insert(out.end(), c.data, c.data + c.size);
  return out;
}

// Copies of every parameter's gradient, in registration order (zeros where none).
inline std::vector<torch::Tensor> gradients(RewardModel& model) {
  std::vector<torch::Tensor> out;
  for (auto& p : model->parameters()) {
    out.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  }
  return out;
}

}  // namespace polar::testutil
