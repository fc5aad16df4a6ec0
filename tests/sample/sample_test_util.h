// Helpers of the sampler tests: a tiny random causal LM in memory and on disk
// (an HF LlamaForCausalLM directory that `polar sample` imports).
#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <string>

#include "common/hf_test_util.h"
#include "common/tiny_data.h"
#include "model/tiny_model.h"
#include "polar/sample/causal_lm.h"

namespace polar::sample::testutil {

// One intra-op thread while alive: the tiny models gain nothing from more, and
// on a busy machine every parallel region would wait for a descheduled thread.
struct OneThread {
  OneThread() : saved(torch::get_num_threads()) { torch::set_num_threads(1); }
  ~OneThread() { torch::set_num_threads(saved); }
  int saved;
};

inline ModelConfig tiny_lm_config(bool qkv_bias = false) {
  ModelConfig c = polar::testutil::tiny_config(/*kv_heads=*/2, qkv_bias);
  c.vocab_size = Tokenizer::load(testing::tiny_tokenizer_dir()).vocab_size();
  c.max_position = 256;
  return c;
}

// LM head weights with logits of spread ~1 (random decoder states have RMS ~1).
inline torch::Tensor tiny_lm_head(const ModelConfig& c, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::normal(0.0, 1.0 / std::sqrt(static_cast<double>(c.hidden_size)),
                       {c.vocab_size, c.hidden_size}, gen, torch::kFloat);
}

inline CausalLM tiny_lm(uint64_t seed = 5, bool qkv_bias = false) {
  const ModelConfig c = tiny_lm_config(qkv_bias);
  return CausalLM(polar::testutil::tiny_model(c, seed), tiny_lm_head(c, seed + 100),
                  Tokenizer::load(testing::tiny_tokenizer_dir()));
}

// Writes DIR as a LlamaForCausalLM Hugging Face directory with the tiny
// tokenizer.
inline void write_tiny_hf_lm(const std::string& dir, uint64_t seed) {
  const ModelConfig c = tiny_lm_config();
  RewardModel model = polar::testutil::tiny_model(c, seed);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : model->named_parameters()) {
    if (p.key() != "score.weight") tensors.emplace_back(p.key(), p.value().detach().clone());
  }
  tensors.emplace_back("lm_head.weight", tiny_lm_head(c, seed + 100));
  const Tokenizer tok = Tokenizer::load(testing::tiny_tokenizer_dir());
  nlohmann::json config = hftest::hf_config_for(c, "LlamaForCausalLM", "llama");
  config["bos_token_id"] = tok.special().bos;
  config["eos_token_id"] = tok.special().eos;
  config["pad_token_id"] = tok.special().pad;
  hftest::write_hf_dir(dir, config, tensors);
}

}  // namespace polar::sample::testutil
