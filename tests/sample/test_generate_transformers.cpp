// The built-in sampler against transformers (the project venv;
// tests/sample/generate_reference.py): tiny random LlamaForCausalLM,
// Qwen2ForCausalLM, Qwen3ForCausalLM (q/k norms, head_dim apart from
// hidden / heads, tied embeddings) and a Llama with llama3 RoPE scaling and
// tied embeddings, built by transformers, are imported with their LM heads;
// greedy generation (batched, left-padded, KV cache) gives exactly the ids of
// transformers' generate run one prompt at a time, and the first-step logits
// agree. Skipped when the venv python or transformers is missing
// (scripts/setup.sh installs both).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/hf_test_util.h"
#include "common/tiny_data.h"
#include "polar/common/json_config.h"
#include "polar/sample/generate.h"
#include "polar/tokenizer/tokenizer.h"
#include "sample_test_util.h"

namespace polar::sample {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* kPython = POLAR_SOURCE_DIR "/.venv/bin/python";
const char* kScript = POLAR_SOURCE_DIR "/tests/sample/generate_reference.py";

bool transformers_available() {
  if (!fs::exists(kPython)) return false;
  const std::string cmd =
      std::string(kPython) + " -c 'import transformers, sentencepiece' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(SampleTransformers, GreedyGenerationEqualsTransformersGenerate) {
  if (!transformers_available())
    GTEST_SKIP() << kPython << " or its transformers package is missing";
  testutil::OneThread one_thread;
  testing::TempDir tmp;
  const Tokenizer tok = Tokenizer::load(testing::tiny_tokenizer_dir());
  const SpecialTokens& s = tok.special();
  auto model = [&](const std::string& name, const char* arch, int seed, int kv, bool tie) {
    return hftest::tiny_hf_model_spec(tmp / name, arch, "causal", seed, kv, tie, s);
  };
  // Prompts of different lengths, so the batch is left-padded; the texts are
  // the tokenizer's own.
  const std::vector<std::string> texts = {"the capital of China", "a",
                                          "policy says good answer, 14",
                                          "question: is Beijing the capital of China? answer"};
  std::vector<std::vector<int32_t>> prompts;
  json with_bos = json::array();
  for (const auto& t : texts) {
    prompts.push_back(tok.encode(t));
    std::vector<int32_t> ids{s.bos};
    ids.insert(ids.end(), prompts.back().begin(), prompts.back().end());
    with_bos.push_back(ids);
  }
  const int64_t max_new = 24;
  json qwen3 = model("qwen3", "qwen3", 13, 2, true);
  qwen3["head_dim"] = 12;
  json llama3 = model("llama3", "llama", 14, 2, true);
  llama3["rope"] = {{"rope_type", "llama3"},
                    {"factor", 8.0},
                    {"low_freq_factor", 1.0},
                    {"high_freq_factor", 4.0},
                    {"original_max_position_embeddings", 16}};
  const json spec = {{"models",
                      {model("llama", "llama", 11, 2, false), model("qwen2", "qwen2", 12, 1, true),
                       qwen3, llama3}},
                     {"prompts", with_bos},
                     {"max_new_tokens", max_new}};
  write_json_file_atomic(tmp / "spec.json", spec);
  const std::string cmd = std::string(kPython) + " " + kScript + " " + (tmp / "spec.json") + " " +
                          (tmp / "out.json") + " > " + (tmp / "python.log") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(tmp / "python.log");
  const json ref = read_json_file(tmp / "out.json");

  for (const char* name : {"llama", "qwen2", "qwen3", "llama3"}) {
    SCOPED_TRACE(name);
    const json& r = ref["results"][tmp / name];
    const CausalLM lm = CausalLM::load(tmp / name, CausalLMOptions{});
    EXPECT_EQ(lm.config().qkv_bias, std::string(name) == "qwen2");
    EXPECT_EQ(lm.config().qk_norm(), std::string(name) == "qwen3");
    EXPECT_EQ(lm.config().rope_type == RopeType::Llama3, std::string(name) == "llama3");
    SamplingParams greedy;
    greedy.temperature = 0;
    greedy.max_new_tokens = max_new;
    const std::vector<uint64_t> seeds(prompts.size(), 0);
    for (int64_t batch : {1, 4}) {
      const auto out = generate(lm, prompts, seeds, greedy, GenerateOptions{batch});
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(json(out[i].ids), r["greedy"][i]) << "prompt " << i << ", batch " << batch;
      }
    }
    // Not vacuous: the continuations differ between prompts and run long.
    EXPECT_NE(r["greedy"][0], r["greedy"][1]);
    EXPECT_GE(r["greedy"][0].size(), 8u);
    // First-step logits, one prompt at a time, within fp32 summation-order
    // differences (~1e-6 on logits of order 1).
    for (size_t i = 0; i < prompts.size(); ++i) {
      KvCache cache = lm.new_cache(1, 64);
      const auto ids = with_bos[i].get<std::vector<int64_t>>();
      const int64_t T = static_cast<int64_t>(ids.size());
      const auto logits = lm.step(torch::tensor(ids).view({1, T}), torch::arange(T).view({1, T}),
                                  torch::ones({1, T}, torch::kBool), cache)[0];
      const auto want = torch::tensor(r["first_logits"][i].get<std::vector<float>>());
      EXPECT_LT((logits - want).abs().max().item<double>(), 1e-5) << "prompt " << i;
      EXPECT_GT(want.std().item<double>(), 0.1);  // logits are spread
    }
  }
}

}  // namespace
}  // namespace polar::sample
