// Sampling from a CausalLM: the token filter (temperature, top-k, top-p, in
// transformers' order), per-sequence seeds, and batched generation with a KV
// cache. Every sequence draws from its own generator, so its text depends only
// on its seed, not on the batch it ran in.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "polar/sample/causal_lm.h"

namespace polar::sample {

struct SamplingParams {
  double temperature = 1.0;       // 0: greedy (argmax)
  double top_p = 0.9;             // 1: off
  int64_t top_k = 50;             // 0: off
  int64_t max_new_tokens = 4096;  // POLAR's trajectories are up to 4096 tokens
  std::vector<std::string> stop;  // the text ends before the first stop string
  // Sent to servers so that they do not fill them from the model's generation_config; the
  // built-in sampler has neither filter and takes only these neutral values.
  double repetition_penalty = 1.0;
  double min_p = 0.0;
  void validate(const std::string& where) const;
};

// The distribution a sampled token is drawn from: softmax(logits / temperature)
// restricted to the top-k logits (ties at the k-th kept) and then to the
// smallest set of most likely tokens whose mass reaches top_p (transformers'
// TopKLogitsWarper then TopPLogitsWarper). logits (V) float; returns
// probabilities (V) summing to 1.
torch::Tensor filtered_probs(const torch::Tensor& logits, const SamplingParams& params);
// One token from logits (V): argmax when temperature is 0, else a draw from
// filtered_probs.
int64_t sample_token(const torch::Tensor& logits, const SamplingParams& params,
                     at::Generator& generator);

// The seed of sample `sample` of prompt `prompt_index` for policy `policy`: a
// hash of the four, so it does not depend on which other prompts or policies a
// run has.
uint64_t sample_seed(uint64_t base_seed, const std::string& policy, int64_t prompt_index,
                     int64_t sample);

struct Generation {
  std::vector<int32_t> ids;  // generated tokens, without the eos that ended them
  std::string text;          // decoded, cut before a stop string
  std::string finish;        // "stop" (eos or a stop string) | "length"
};

struct GenerateOptions {
  int64_t batch_size = 8;
  bool add_bos = true;  // start each prompt with the tokenizer's bos, as
                        // transformers' tokenizers do
};

// Generates one continuation per prompt (token ids, without bos), prompts[i]
// with seeds[i], batch_size prompts at a time, left-padded. Prompts longer than
// max_position - max_new_tokens keep their last tokens.
std::vector<Generation> generate(const CausalLM& lm,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const std::vector<uint64_t>& seeds, const SamplingParams& params,
                                 const GenerateOptions& options = {});

}  // namespace polar::sample
