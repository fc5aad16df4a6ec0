// Cross-checks with transformers (the project venv; tests/common/hf_reference.py): tiny random
// Llama and Qwen2 models built by transformers are imported and score the same token ids within
// 1e-4 in fp32; polar exports load in transformers (AutoModelForSequenceClassification, no custom
// code) and score like `polar` does, one sequence at a time and as a right-padded batch; the
// exported tokenizer loads, encodes like polar's, and turns POLAR-template strings into the ids
// (and scores) of polar's template. Skipped when the venv python or transformers is missing
// (scripts/setup.sh installs both).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/hf_reference_suite.h"
#include "common/hf_test_util.h"
#include "model/tiny_model.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/hf.h"
#include "polar/tokenizer/template.h"

namespace polar::io {
namespace {

namespace fs = std::filesystem;
using hftest::rewards_of;
using nlohmann::json;

using hftest::kPython;
using hftest::run_reference;
using hftest::transformers_available;
// fp32 throughout; transformers and polar differ only in summation order (SDPA kernels,
// matmul blocking), i.e. ~1e-6 relative on rewards of order 1. 1e-4 leaves room, and any
// layout or RoPE mistake moves rewards by 1e-2 or more.
constexpr double kTol = 1e-4;

class HfTransformers : public hftest::ReferenceSuite<HfTransformers> {
 public:
  static double tolerance() { return kTol; }

 protected:
  // One python run builds every reference model and scores the sequence-classification ones.
  static void SetUpTestSuite() {
    if (!transformers_available()) return;
    tmp_ = new testing::TempDir();
    const Tokenizer tok = Tokenizer::load(testing::tiny_tokenizer_dir());
    const SpecialTokens& s = tok.special();
    seqs_ = hftest::polar_sequences(6, tok.vocab_size(), s.bos, s.reward, 17);
    auto model = [&](const std::string& name, const char* arch, const char* head, int seed, int kv,
                     bool tie, double rope) {
      json m = hftest::tiny_hf_model_spec(*tmp_ / name, arch, head, seed, kv, tie, s);
      if (rope != 1.0) m["rope_scaling"] = rope;
      return m;
    };
    json llama_causal = model("llama_causal", "llama", "causal", 3, 2, false, 2.0);
    llama_causal["backbone_from"] = *tmp_ / "llama";
    json qwen2_causal = model("qwen2_causal", "qwen2", "causal", 4, 1, true, 1.0);
    qwen2_causal["backbone_from"] = *tmp_ / "qwen2";
    const json spec = {
        {"models",
         {model("llama", "llama", "seqcls", 1, 2, false, 2.0),
          model("qwen2", "qwen2", "seqcls", 2, 1, true, 1.0), llama_causal, qwen2_causal}},
        {"score", {{"models", {*tmp_ / "llama", *tmp_ / "qwen2"}}, {"sequences", seqs_}}}};
    build_reference(spec);
  }
};

TEST_F(HfTransformers, ImportedSequenceClassifiersScoreLikeTransformers) {
  for (const char* name : {"llama", "qwen2"}) {
    SCOPED_TRACE(name);
    LoadedModel lm = import_hf(*tmp_ / name, torch::kCPU);
    EXPECT_EQ(lm.shape.architecture, name);
    EXPECT_EQ(lm.shape.qkv_bias, std::string(name) == "qwen2");
    const auto got = rewards_of(lm.model, seqs_);
    expect_close(got, result(name)["rewards"], "one at a time");
    expect_close(got, result(name)["batched"], "right-padded batch");
    // Not vacuous: rewards are spread out, so a 1e-4 agreement means something.
    EXPECT_GT(std::abs(got[1] - got[2]), 1e-2);
  }
}

TEST_F(HfTransformers, ImportedCausalLmKeepsTheBackbone) {
  // The causal models share their backbone with the sequence classifiers; give the fresh reward
  // head the classifier's score and the rewards must match transformers' classifier.
  for (const char* name : {"llama", "qwen2"}) {
    SCOPED_TRACE(name);
    LoadedModel causal = import_hf(*tmp_ / (std::string(name) + "_causal"), torch::kCPU);
    EXPECT_EQ(causal.config["import"]["reward_head"], "initialised");
    LoadedModel seqcls = import_hf(*tmp_ / name, torch::kCPU);
    {
      torch::NoGradGuard no_grad;
      auto dst = causal.model->named_parameters()["score.weight"];
      dst.copy_(seqcls.model->named_parameters()["score.weight"]);
    }
    expect_close(rewards_of(causal.model, seqs_), result(name)["rewards"], "causal backbone");
  }
}

TEST_F(HfTransformers, ExportsLoadInTransformersAndScoreTheSame) {
  testing::TempDir out;
  const Tokenizer tok = Tokenizer::load(testing::tiny_tokenizer_dir());
  struct Case {
    std::string name;
    LoadedModel lm;
    const char* expect_class;
  };
  std::vector<Case> cases;
  for (bool bias : {false, true}) {
    ModelConfig c = testutil::tiny_config(/*kv_heads=*/2, bias);
    c.rope_scaling = bias ? 1.0 : 3.0;
    LoadedModel lm;
    lm.model = testutil::tiny_model(c, 31);
    lm.shape = lm.model->config();
    lm.tokenizer = tok;
    lm.config = json{{"model", lm.shape.to_json()}};
    cases.push_back({bias ? "qwen2" : "llama", std::move(lm),
                     bias ? "Qwen2ForSequenceClassification" : "LlamaForSequenceClassification"});
  }
  // An InternLM2 model exported without custom code, as the docs recommend for vLLM.
  {
    LoadedModel lm;
    ModelConfig c = testutil::tiny_config(/*kv_heads=*/1);
    c.architecture = "internlm2";
    lm.model = testutil::tiny_model(c, 32);
    lm.shape = lm.model->config();
    lm.tokenizer = tok;
    lm.config = json{{"model", lm.shape.to_json()}};
    cases.push_back({"internlm2_as_llama", std::move(lm), "LlamaForSequenceClassification"});
  }
  json models = json::array();
  for (auto& c : cases) {
    HfExportOptions o;
    o.format = "hf-llama";
    o.dtype = "fp32";
    export_hf(c.lm, out / c.name, o);
    models.push_back(out / c.name);
  }
  const std::vector<std::string> texts = {"The capital of China is Beijing.\nYes", "a\n\n  b c"};
  // (prompt, reference, candidate) triples, and the strings a serving client builds from them.
  const std::vector<std::array<std::string, 3>> triples = {
      {"What is the capital of China?", "Beijing.", "Shanghai."},
      {"copy: 12 34", "12 34", "12 35"}};
  const std::string reward_piece = tok.id_to_piece(tok.special().reward);
  std::vector<std::string> template_texts;
  for (const auto& [p, r, c] : triples)
    template_texts.push_back(p + "\n" + r + "<|reward|>" + p + "\n" + c + reward_piece);
  const json spec = {{"models", models},
                     {"sequences", seqs_},
                     {"texts", texts},
                     {"special_pieces", {"<|reward|>", reward_piece}},
                     {"template_texts", template_texts}};
  const json ref = run_reference(out.path(), "score", spec);
  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    const json& r = ref["results"][out / c.name];
    EXPECT_EQ(r["architecture"], c.expect_class);
    EXPECT_NE(r["pad_token_id"], tok.special().reward);
    const auto want = rewards_of(c.lm.model, seqs_);
    expect_close(want, r["rewards"], "one at a time");
    expect_close(want, r["batched"], "right-padded batch");
    const json& t = r["tokenizer"];
    EXPECT_EQ(t["bos_token_id"], tok.special().bos);
    EXPECT_EQ(t["pad_token_id"], tok.special().pad);
    EXPECT_EQ(t["special_ids"], json({tok.special().reward_sep, tok.special().reward}));
    for (size_t i = 0; i < texts.size(); ++i)
      EXPECT_EQ(t["encoded"][i], json(tok.encode(texts[i]))) << texts[i];
    std::vector<int32_t> with_bos{tok.special().bos};
    for (int32_t id : tok.encode(texts[0])) with_bos.push_back(id);
    EXPECT_EQ(t["with_bos"], json(with_bos));
    // The serving path: the template string tokenised by transformers gives polar's ids and score.
    for (size_t i = 0; i < triples.size(); ++i) {
      const auto group = encode_group_text(tok, TemplateKind::Finetune, triples[i][0],
                                           triples[i][1], {triples[i][2]}, TemplateLimits{});
      ASSERT_TRUE(group.has_value());
      std::vector<int64_t> ids(group->prefix.begin(), group->prefix.end());
      ids.insert(ids.end(), group->candidates[0].begin(), group->candidates[0].end());
      EXPECT_EQ(r["template"]["ids"][i], json(ids)) << template_texts[i];
      EXPECT_NEAR(rewards_of(c.lm.model, {ids})[0], r["template"]["rewards"][i].get<double>(), kTol)
          << template_texts[i];
    }
  }
}

}  // namespace
}  // namespace polar::io
