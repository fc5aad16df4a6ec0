// Qwen3 and Llama 3.x against transformers (the project venv; tests/common/hf_reference.py): tiny
// random models built by transformers, Qwen3 with q/k norms, a head_dim apart from
// hidden / heads and tied embeddings, Llama with llama3 RoPE scaling (frequencies on all three
// sides of its ramp) and tied embeddings, are imported and score the same token ids within 1e-5
// in fp32, their causal LMs keep the backbone, and polar's exports load in transformers
// (AutoModelForSequenceClassification, no custom code) and give polar's rewards. Skipped when
// the venv python or transformers is missing (scripts/setup.sh installs both).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <iostream>

#include "common/hf_reference_suite.h"
#include "common/hf_test_util.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/hf.h"

namespace polar::io {
namespace {

using hftest::kPython;
using hftest::rewards_of;
using hftest::run_reference;
using hftest::transformers_available;
using nlohmann::json;

// fp32 throughout; transformers and polar differ only in summation order, ~1e-6 on rewards of
// order 1, while a wrong q/k norm, head_dim or RoPE frequency moves them by 1e-2 or more.
constexpr double kTol = 1e-5;

// llama3 RoPE with a short original context: with head_dim 8 and theta 5000 the wavelengths
// are 6.3 (kept), 53 (smoothed), 444 and 3736 (divided by the factor).
const json kLlama3Rope = {{"rope_type", "llama3"},
                          {"factor", 8.0},
                          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 64}};

class HfFamilies : public hftest::ReferenceSuite<HfFamilies> {
 public:
  static double tolerance() { return kTol; }

 protected:
  static void SetUpTestSuite() {
    if (!transformers_available()) return;
    tmp_ = new testing::TempDir();
    const Tokenizer tok = Tokenizer::load(testing::tiny_tokenizer_dir());
    const SpecialTokens& s = tok.special();
    seqs_ = hftest::polar_sequences(6, tok.vocab_size(), s.bos, s.reward, 29);
    {  // 130 tokens: positions past the longer wavelengths of the llama3 ramp
      std::mt19937 rng(31);
      std::uniform_int_distribution<int64_t> id(6, tok.vocab_size() - 1);
      std::vector<int64_t> long_seq{s.bos};
      for (int i = 0; i < 128; ++i) long_seq.push_back(id(rng));
      long_seq.push_back(s.reward);
      seqs_.push_back(long_seq);
    }
    auto model = [&](const std::string& name, const char* arch, const char* head, int seed) {
      json m = hftest::tiny_hf_model_spec(*tmp_ / name, arch, head, seed, /*kv_heads=*/2,
                                          /*tie=*/true, s);
      if (std::string(arch) == "qwen3") {
        m["head_dim"] = 12;  // hidden 48 / 6 heads is 8
      } else {
        m["rope"] = kLlama3Rope;
      }
      return m;
    };
    json qwen3_causal = model("qwen3_causal", "qwen3", "causal", 43);
    qwen3_causal["backbone_from"] = *tmp_ / "qwen3";
    json llama3_causal = model("llama3_causal", "llama", "causal", 44);
    llama3_causal["backbone_from"] = *tmp_ / "llama3";
    const json spec = {
        {"models",
         {model("qwen3", "qwen3", "seqcls", 41), model("llama3", "llama", "seqcls", 42),
          qwen3_causal, llama3_causal}},
        {"score", {{"models", {*tmp_ / "qwen3", *tmp_ / "llama3"}}, {"sequences", seqs_}}}};
    build_reference(spec);
  }
};

TEST_F(HfFamilies, ImportedShapesCarryTheFamilysNumerics) {
  const LoadedModel qwen3 = import_hf(*tmp_ / "qwen3", torch::kCPU);
  EXPECT_EQ(qwen3.shape.architecture, "qwen3");
  EXPECT_TRUE(qwen3.shape.qk_norm());
  EXPECT_FALSE(qwen3.shape.qkv_bias);
  EXPECT_EQ(qwen3.shape.head_size(), 12);
  EXPECT_TRUE(qwen3.shape.tie_embeddings);
  EXPECT_EQ(qwen3.model->named_parameters()["model.layers.1.self_attn.q_norm.weight"].sizes(),
            (std::vector<int64_t>{12}));
  EXPECT_EQ(qwen3.model->named_parameters()["model.layers.0.self_attn.q_proj.weight"].sizes(),
            (std::vector<int64_t>{72, 48}));
  const LoadedModel llama3 = import_hf(*tmp_ / "llama3", torch::kCPU);
  EXPECT_EQ(llama3.shape.architecture, "llama");
  EXPECT_EQ(llama3.shape.rope_type, RopeType::Llama3);
  EXPECT_DOUBLE_EQ(llama3.shape.rope_scaling, 8.0);
  EXPECT_DOUBLE_EQ(llama3.shape.rope_high_freq_factor, 4.0);
  EXPECT_EQ(llama3.shape.rope_original_max_position, 64);
}

TEST_F(HfFamilies, ImportedSequenceClassifiersScoreLikeTransformers) {
  for (const char* name : {"qwen3", "llama3"}) {
    SCOPED_TRACE(name);
    LoadedModel lm = import_hf(*tmp_ / name, torch::kCPU);
    const auto got = rewards_of(lm.model, seqs_);
    expect_close(got, result(name)["rewards"], std::string(name) + " one at a time");
    expect_close(got, result(name)["batched"], std::string(name) + " right-padded batch");
    EXPECT_GT(std::abs(got[1] - got[2]), 1e-2);  // rewards are spread: agreement means something
  }
}

TEST_F(HfFamilies, ImportedCausalLmKeepsTheBackbone) {
  for (const char* name : {"qwen3", "llama3"}) {
    SCOPED_TRACE(name);
    LoadedModel causal = import_hf(*tmp_ / (std::string(name) + "_causal"), torch::kCPU);
    EXPECT_EQ(causal.config["import"]["reward_head"], "initialised");
    LoadedModel seqcls = import_hf(*tmp_ / name, torch::kCPU);
    {
      torch::NoGradGuard no_grad;
      causal.model->named_parameters()["score.weight"].copy_(
          seqcls.model->named_parameters()["score.weight"]);
    }
    expect_close(rewards_of(causal.model, seqs_), result(name)["rewards"], "causal backbone");
  }
}

TEST_F(HfFamilies, ExportsLoadInTransformersAndScoreTheSame) {
  testing::TempDir out;
  json models = json::array();
  std::map<std::string, LoadedModel> imported;
  for (const char* name : {"qwen3", "llama3"}) {
    imported[name] = import_hf(*tmp_ / name, torch::kCPU);
    HfExportOptions o;
    o.dtype = "fp32";
    export_hf(imported[name], out / name, o);
    models.push_back(out / name);
  }
  const json ref = run_reference(out.path(), "score", {{"models", models}, {"sequences", seqs_}});
  for (const char* name : {"qwen3", "llama3"}) {
    SCOPED_TRACE(name);
    const json& r = ref["results"][out / name];
    EXPECT_EQ(r["architecture"], std::string(name) == "qwen3" ? "Qwen3ForSequenceClassification"
                                                              : "LlamaForSequenceClassification");
    const auto want = rewards_of(imported[name].model, seqs_);
    expect_close(want, r["rewards"], std::string(name) + " export, one at a time");
    expect_close(want, r["batched"], std::string(name) + " export, right-padded batch");
    // The export's config keeps what transformers needs to reproduce the numerics.
    const json config = read_json_file(out / (std::string(name) + "/config.json"));
    if (std::string(name) == "qwen3") {
      EXPECT_EQ(config["head_dim"], 12);
    } else {
      for (const auto& [key, value] : kLlama3Rope.items())
        EXPECT_EQ(config["rope_scaling"][key], value) << key;
    }
  }
}

}  // namespace
}  // namespace polar::io
