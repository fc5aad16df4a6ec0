// Helpers of the Hugging Face interop tests: rewards of single sequences, writing an HF
// directory from named tensors, and POLAR-shaped random token sequences.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/tiny_data.h"
#include "polar/common/json_config.h"
#include "polar/io/safetensors.h"
#include "polar/model/reward_model.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar::hftest {

// The spec hf_reference.py builds a tiny random Hugging Face model from (vocabulary 320, hidden
// 48, 2 layers, 6 heads, MLP 80, rope theta 5000, the tiny tokenizer's special ids); `head` is
// "reward" or "causal".
inline nlohmann::json tiny_hf_model_spec(const std::filesystem::path& dir, const char* arch,
                                         const char* head, int seed, int kv_heads, bool tie,
                                         const SpecialTokens& s) {
  return {{"dir", dir},           {"arch", arch},
          {"head", head},         {"seed", seed},
          {"vocab", 320},         {"hidden", 48},
          {"layers", 2},          {"heads", 6},
          {"kv_heads", kv_heads}, {"intermediate", 80},
          {"rope_theta", 5000.0}, {"tie", tie},
          {"bos", s.bos},         {"eos", s.eos},
          {"pad", s.pad},         {"tokenizer_from", testing::tiny_tokenizer_dir()}};
}

// The venv's python and the reference side of the transformers cross-checks.
inline const char* kPython = POLAR_SOURCE_DIR "/.venv/bin/python";
inline const char* kScript = POLAR_SOURCE_DIR "/tests/common/hf_reference.py";

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// True when the venv has transformers and sentencepiece (scripts/setup.sh installs both).
inline bool transformers_available() {
  if (!std::filesystem::exists(kPython)) return false;
  const std::string cmd =
      std::string(kPython) + " -c 'import transformers, sentencepiece' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// Runs hf_reference.py COMMAND on `spec` in `dir`; returns its JSON output.
inline nlohmann::json run_reference(const std::string& dir, const std::string& command,
                                    const nlohmann::json& spec) {
  write_json_file_atomic(dir + "/spec.json", spec);
  const std::string cmd = std::string(kPython) + " " + kScript + " " + command + " " + dir +
                          "/spec.json " + dir + "/out.json > " + dir + "/python.log 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << slurp(dir + "/python.log");
  return read_json_file(dir + "/out.json");
}

// One reward per sequence, each run alone (no packing), in the model's dtype.
inline std::vector<double> rewards_of(RewardModel& model,
                                      const std::vector<std::vector<int64_t>>& seqs) {
  torch::NoGradGuard no_grad;
  model->eval();
  std::vector<double> out;
  for (const auto& s : seqs) {
    const int64_t T = static_cast<int64_t>(s.size());
    const auto tokens = torch::tensor(s, torch::kInt64).view({1, T});
    const auto positions = torch::arange(T, torch::kInt64).view({1, T});
    const auto segments = torch::ones({1, T}, torch::kInt64);
    const auto index = torch::tensor(std::vector<int64_t>{T - 1}, torch::kInt64);
    out.push_back(model->forward(tokens, positions, segments, index).item<double>());
  }
  return out;
}

// Sequences shaped like POLAR inputs: bos, random ordinary tokens, the reward token last; one
// is the reward token alone.
inline std::vector<std::vector<int64_t>> polar_sequences(int64_t first_plain_id, int64_t end_id,
                                                         int64_t bos, int64_t reward,
                                                         uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> id(first_plain_id, end_id - 1);
  std::vector<std::vector<int64_t>> out{{reward}};
  for (int64_t len : {2, 9, 23, 40}) {
    std::vector<int64_t> s{bos};
    for (int64_t i = 0; i < len; ++i) s.push_back(id(rng));
    s.push_back(reward);
    out.push_back(s);
  }
  return out;
}

inline std::map<std::string, torch::Tensor> params_of(const RewardModel& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model->named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

// DIR/config.json, DIR/model.safetensors and (optionally) the tiny tokenizer's tokenizer.model.
inline void write_hf_dir(const std::string& dir, const nlohmann::json& config,
                         const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                         bool with_tokenizer = true) {
  std::filesystem::create_directories(dir);
  io::save_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  write_json_file_atomic(dir + "/config.json", config);
  if (with_tokenizer) {
    std::filesystem::copy_file(testing::tiny_tokenizer_dir() + "/tokenizer.model",
                               dir + "/tokenizer.model",
                               std::filesystem::copy_options::overwrite_existing);
  }
}

// A transformers 4.x style config.json for `shape` under the given architecture class.
inline nlohmann::json hf_config_for(const ModelConfig& s, const std::string& architecture,
                                    const std::string& model_type) {
  nlohmann::json j = {{"architectures", {architecture}},
                      {"model_type", model_type},
                      {"vocab_size", s.vocab_size},
                      {"hidden_size", s.hidden_size},
                      {"num_hidden_layers", s.num_layers},
                      {"num_attention_heads", s.num_heads},
                      {"num_key_value_heads", s.num_kv_heads},
                      {"intermediate_size", s.intermediate_size},
                      {"max_position_embeddings", s.max_position},
                      {"rms_norm_eps", s.rms_eps},
                      {"rope_theta", s.rope_theta},
                      {"hidden_act", "silu"},
                      {"tie_word_embeddings", false},
                      {"initializer_range", s.init_std},
                      {"bos_token_id", 1},
                      {"eos_token_id", 2},
                      {"pad_token_id", 3}};
  if (s.rope_scaling != 1.0) j["rope_scaling"] = {{"type", "linear"}, {"factor", s.rope_scaling}};
  return j;
}

inline void expect_same_params(const std::map<std::string, torch::Tensor>& a,
                               const std::map<std::string, torch::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    ASSERT_NE(it, b.end()) << name;
    EXPECT_TRUE(torch::equal(t, it->second)) << name << " differs";
  }
}

}  // namespace polar::hftest
