// Layout adapters of the Hugging Face import: InternLM2's packed wqkv order, a hand-packed
// InternLM2 directory scoring like its Llama-layout twin, and the errors for missing,
// unexpected or inexpressible tensors and for a missing tokenizer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <functional>

#include "common/hf_test_util.h"
#include "model/tiny_model.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/hf.h"
#include "polar/common/error.h"
#include "polar/io/hf_layouts.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar::io {
namespace {

namespace fs = std::filesystem;
using hftest::params_of;
using hftest::rewards_of;
using nlohmann::json;
using torch::Tensor;

// Row r of the result holds value base + r in every column: the packed order is then readable.
Tensor numbered_rows(int64_t rows, int64_t cols, double base) {
  return (torch::arange(rows, torch::kDouble) + base)
      .unsqueeze(1)
      .expand({rows, cols})
      .contiguous();
}

TEST(HfLayout, PackWqkvFollowsInternLM2Grouping) {
  const int64_t heads = 6, kv_heads = 2, D = 4, hidden = 3, g = heads / kv_heads;
  const Tensor q = numbered_rows(heads * D, hidden, 0),
               k = numbered_rows(kv_heads * D, hidden, 1000),
               v = numbered_rows(kv_heads * D, hidden, 2000);
  const Tensor packed = hf::pack_wqkv(q, k, v, heads, kv_heads);
  ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{kv_heads * (g + 2) * D, hidden}));
  // InternLM2: rearrange(qkv, "b q (h gs d) -> b q h gs d", gs=2+g); q = [..., :g], k = [-2], v =
  // [-1].
  for (int64_t h = 0; h < kv_heads; ++h) {
    for (int64_t slot = 0; slot < g + 2; ++slot) {
      for (int64_t d = 0; d < D; ++d) {
        const int64_t row = (h * (g + 2) + slot) * D + d;
        double expected;
        if (slot < g) {
          expected =
              static_cast<double>((h * g + slot) * D + d);  // query head h*g + slot reads kv head h
        } else {
          expected = (slot == g ? 1000.0 : 2000.0) + static_cast<double>(h * D + d);
        }
        EXPECT_EQ(packed[row][0].item<double>(), expected) << "row " << row;
      }
    }
  }
}

TEST(HfLayout, UnpackInvertsPackForWeightsAndBiases) {
  torch::manual_seed(3);
  for (auto [heads, kv_heads] : {std::pair<int64_t, int64_t>{4, 4}, {4, 1}, {8, 2}}) {
    const int64_t D = 6;
    for (bool bias : {false, true}) {
      auto shape = [&](int64_t n) {
        return bias ? std::vector<int64_t>{n * D} : std::vector<int64_t>{n * D, 5};
      };
      const Tensor q = torch::randn(shape(heads)), k = torch::randn(shape(kv_heads)),
                   v = torch::randn(shape(kv_heads));
      const auto back =
          hf::unpack_wqkv(hf::pack_wqkv(q, k, v, heads, kv_heads), heads, kv_heads, D, "wqkv");
      EXPECT_TRUE(torch::equal(back[0], q));
      EXPECT_TRUE(torch::equal(back[1], k));
      EXPECT_TRUE(torch::equal(back[2], v));
    }
  }
  try {
    hf::unpack_wqkv(torch::zeros({10, 5}), 4, 2, 2, "layer 3 wqkv");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 3 wqkv: expected 16 rows"), std::string::npos)
        << e.what();
  }
}

// Every registered family has a layout, and its tensors map back to the same parameters.
TEST(HfLayout, EveryFamilyHasALayoutThatRoundTrips) {
  for (const auto& family : model_families()) {
    for (bool bias : {false, true}) {
      SCOPED_TRACE(std::string(family.name) + (bias ? " with q/k/v bias" : ""));
      ModelConfig c = testutil::tiny_config(2, bias);
      c.architecture = family.name;
      std::map<std::string, Tensor> params;
      for (const auto& p : testutil::tiny_model(c)->named_parameters())
        params[p.key()] = p.value().detach();
      const auto hf_tensors = hf::polar_to_hf(family.family, c, params);
      std::map<std::string, Tensor> by_name(hf_tensors.begin(), hf_tensors.end());
      EXPECT_EQ(by_name.size(), hf_tensors.size());  // no name written twice
      EXPECT_TRUE(by_name.count(hf::layout_table(family.family).reward_head));
      const auto back = hf::hf_to_polar(family.family, c, by_name, true, "round trip");
      EXPECT_TRUE(by_name.empty());  // every written tensor is read
      ASSERT_EQ(back.size(), params.size());
      for (const auto& [name, t] : params) EXPECT_TRUE(torch::equal(back.at(name), t)) << name;
    }
  }
}

class HfLayoutDirs : public ::testing::Test {
 protected:
  void SetUp() override {
    tok_ = Tokenizer::load(testing::tiny_tokenizer_dir());
    shape_ = testutil::tiny_config(/*kv_heads=*/2);
    model_ = testutil::tiny_model(shape_, /*seed=*/11);
    shape_ = model_->config();
    seqs_ =
        hftest::polar_sequences(6, tok_.vocab_size(), tok_.special().bos, tok_.special().reward, 5);
  }

  // InternLM2 tensors packed here by explicit per-head slicing, independent of pack_wqkv.
  std::vector<std::pair<std::string, Tensor>> internlm2_tensors(bool reward_model) {
    auto p = params_of(model_);
    const int64_t D = shape_.head_size(), g = shape_.num_heads / shape_.num_kv_heads;
    std::vector<std::pair<std::string, Tensor>> out{
        {"model.tok_embeddings.weight", p["model.embed_tokens.weight"]}};
    for (int64_t i = 0; i < shape_.num_layers; ++i) {
      const std::string pre = "model.layers." + std::to_string(i) + ".";
      std::vector<Tensor> rows;
      for (int64_t h = 0; h < shape_.num_kv_heads; ++h) {
        for (int64_t j = 0; j < g; ++j)
          rows.push_back(p[pre + "self_attn.q_proj.weight"].narrow(0, (h * g + j) * D, D));
        rows.push_back(p[pre + "self_attn.k_proj.weight"].narrow(0, h * D, D));
        rows.push_back(p[pre + "self_attn.v_proj.weight"].narrow(0, h * D, D));
      }
      out.emplace_back(pre + "attention.wqkv.weight", torch::cat(rows, 0));
      out.emplace_back(pre + "attention.wo.weight", p[pre + "self_attn.o_proj.weight"]);
      out.emplace_back(pre + "feed_forward.w1.weight", p[pre + "mlp.gate_proj.weight"]);
      out.emplace_back(pre + "feed_forward.w3.weight", p[pre + "mlp.up_proj.weight"]);
      out.emplace_back(pre + "feed_forward.w2.weight", p[pre + "mlp.down_proj.weight"]);
      out.emplace_back(pre + "attention_norm.weight", p[pre + "input_layernorm.weight"]);
      out.emplace_back(pre + "ffn_norm.weight", p[pre + "post_attention_layernorm.weight"]);
    }
    out.emplace_back("model.norm.weight", p["model.norm.weight"]);
    if (reward_model) {
      out.emplace_back("v_head.weight", p["score.weight"]);
    } else {
      out.emplace_back("output.weight", torch::randn({shape_.vocab_size, shape_.hidden_size}));
    }
    return out;
  }

  json internlm2_config(bool reward_model) {
    json c = hftest::hf_config_for(
        shape_, reward_model ? "InternLM2ForRewardModel" : "InternLM2ForCausalLM", "internlm2");
    c["reward_token_id"] = tok_.special().reward;
    return c;
  }

  std::vector<std::pair<std::string, Tensor>> llama_tensors() {
    std::vector<std::pair<std::string, Tensor>> out;
    for (const auto& p : model_->named_parameters()) out.emplace_back(p.key(), p.value().detach());
    return out;
  }

  static std::string error_of(const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  testing::TempDir tmp_;
  Tokenizer tok_;
  ModelConfig shape_;
  RewardModel model_{nullptr};
  std::vector<std::vector<int64_t>> seqs_;
};

TEST_F(HfLayoutDirs, HandPackedInternLM2ScoresLikeItsLlamaTwin) {
  const std::string llama = tmp_ / "llama", internlm2 = tmp_ / "internlm2";
  hftest::write_hf_dir(llama,
                       hftest::hf_config_for(shape_, "LlamaForSequenceClassification", "llama"),
                       llama_tensors());
  hftest::write_hf_dir(internlm2, internlm2_config(true), internlm2_tensors(true));
  LoadedModel a = import_hf(llama, torch::kCPU), b = import_hf(internlm2, torch::kCPU);
  EXPECT_EQ(a.shape.architecture, "llama");
  EXPECT_EQ(b.shape.architecture, "internlm2");
  // Same weights, same operations: bit-identical parameters, so identical rewards.
  hftest::expect_same_params(params_of(a.model), params_of(model_));
  hftest::expect_same_params(params_of(b.model), params_of(model_));
  const auto expected = rewards_of(model_, seqs_);
  EXPECT_EQ(rewards_of(a.model, seqs_), expected);
  EXPECT_EQ(rewards_of(b.model, seqs_), expected);
  EXPECT_EQ(b.tokenizer.special().reward, tok_.special().reward);
  EXPECT_EQ(b.tokenizer.special().reward_sep, tok_.special().reward_sep);
  EXPECT_EQ(b.config["import"]["reward_head"], "imported");
}

TEST_F(HfLayoutDirs, CausalLmDropsTheLmHeadAndGetsAFreshRewardHead) {
  const std::string dir = tmp_ / "causal";
  hftest::write_hf_dir(dir, internlm2_config(false), internlm2_tensors(false));
  HfImportOptions options;
  options.head_seed = 42;
  LoadedModel lm = import_hf(dir, torch::kCPU, options);
  auto got = params_of(lm.model);
  auto want = params_of(model_);
  RewardModel fresh(shape_);
  fresh->reset_reward_head(42);
  EXPECT_TRUE(torch::equal(got["score.weight"], params_of(fresh)["score.weight"]));
  got.erase("score.weight");
  want.erase("score.weight");
  hftest::expect_same_params(got, want);
  EXPECT_EQ(lm.config["import"]["reward_head"], "initialised");
  EXPECT_EQ(lm.config["import"]["architecture"], "InternLM2ForCausalLM");
}

TEST_F(HfLayoutDirs, MissingAndUnexpectedTensorsAreNamed) {
  auto tensors = internlm2_tensors(true);
  auto without = tensors;
  without.erase(std::remove_if(without.begin(), without.end(),
                               [](const auto& t) {
                                 return t.first == "model.layers.1.attention.wqkv.weight";
                               }),
                without.end());
  hftest::write_hf_dir(tmp_ / "missing", internlm2_config(true), without);
  const std::string missing = error_of([&] { import_hf(tmp_ / "missing", torch::kCPU); });
  EXPECT_NE(
      missing.find("missing tensor \"model.layers.1.attention.wqkv.weight\" (InternLM2 layout)"),
      std::string::npos)
      << missing;

  auto extra = tensors;
  extra.emplace_back("model.layers.0.attention.gate.weight", torch::zeros({2}));
  hftest::write_hf_dir(tmp_ / "extra", internlm2_config(true), extra);
  const std::string unexpected = error_of([&] { import_hf(tmp_ / "extra", torch::kCPU); });
  EXPECT_NE(unexpected.find("unexpected tensor(s)"), std::string::npos) << unexpected;
  EXPECT_NE(unexpected.find("model.layers.0.attention.gate.weight"), std::string::npos)
      << unexpected;

  // A Llama-layout directory that says it is InternLM2 names the first InternLM2 tensor it lacks.
  hftest::write_hf_dir(tmp_ / "mislabelled", internlm2_config(true), llama_tensors());
  EXPECT_NE(error_of([&] {
              import_hf(tmp_ / "mislabelled", torch::kCPU);
            }).find("model.tok_embeddings.weight"),
            std::string::npos);

  auto wrong_shape = tensors;
  wrong_shape[0].second = torch::zeros({7, shape_.hidden_size});
  hftest::write_hf_dir(tmp_ / "shape", internlm2_config(true), wrong_shape);
  EXPECT_NE(error_of([&] {
              import_hf(tmp_ / "shape", torch::kCPU);
            }).find("model.embed_tokens.weight\" has shape [7, 64]"),
            std::string::npos);
}

TEST_F(HfLayoutDirs, OutputBiasMustBeZero) {
  json c = hftest::hf_config_for(shape_, "LlamaForSequenceClassification", "llama");
  c["attention_bias"] = true;
  auto tensors = llama_tensors();
  torch::manual_seed(1);
  for (int64_t i = 0; i < shape_.num_layers; ++i) {
    const std::string pre = "model.layers." + std::to_string(i) + ".self_attn.";
    for (const char* p : {"q_proj", "k_proj", "v_proj"}) {
      const int64_t rows = std::string(p) == "q_proj" ? shape_.hidden_size
                                                      : shape_.num_kv_heads * shape_.head_size();
      tensors.emplace_back(pre + p + ".bias", torch::randn({rows}));
    }
    tensors.emplace_back(pre + "o_proj.bias", torch::zeros({shape_.hidden_size}));
  }
  hftest::write_hf_dir(tmp_ / "zero", c, tensors);
  LoadedModel lm = import_hf(tmp_ / "zero", torch::kCPU);
  EXPECT_TRUE(lm.shape.qkv_bias);
  EXPECT_TRUE(torch::equal(params_of(lm.model)["model.layers.1.self_attn.k_proj.bias"],
                           tensors[tensors.size() - 3].second));

  tensors.back().second = torch::full({shape_.hidden_size}, 0.5);
  hftest::write_hf_dir(tmp_ / "nonzero", c, tensors);
  const std::string msg = error_of([&] { import_hf(tmp_ / "nonzero", torch::kCPU); });
  EXPECT_NE(msg.find("model.layers.1.self_attn.o_proj.bias\" is not zero"), std::string::npos)
      << msg;
}

TEST_F(HfLayoutDirs, MissingTokenizerIsExplainedAndTokenizerOptionFixesIt) {
  const std::string dir = tmp_ / "no_tokenizer";
  hftest::write_hf_dir(dir,
                       hftest::hf_config_for(shape_, "LlamaForSequenceClassification", "llama"),
                       llama_tensors(),
                       /*with_tokenizer=*/false);
  const std::string msg = error_of([&] { import_hf(dir, torch::kCPU); });
  EXPECT_NE(msg.find("no tokenizer.model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--tokenizer"), std::string::npos) << msg;
  HfImportOptions options;
  options.tokenizer_dir = testing::tiny_tokenizer_dir();
  LoadedModel lm = import_hf(dir, torch::kCPU, options);
  EXPECT_EQ(lm.tokenizer.special().reward, tok_.special().reward);
  EXPECT_EQ(rewards_of(lm.model, seqs_), rewards_of(model_, seqs_));
}

TEST_F(HfLayoutDirs, TokenizerOptionMustBeTheWeightsTokenizer) {
  // The directory's own tokenizer.model is the tiny tokenizer: the same model with other special
  // ids is accepted, another model is refused naming both.
  const std::string dir = tmp_ / "with_tokenizer";
  hftest::write_hf_dir(dir,
                       hftest::hf_config_for(shape_, "LlamaForSequenceClassification", "llama"),
                       llama_tensors());
  HfImportOptions options;
  options.tokenizer_dir = testing::tiny_tokenizer_dir();
  EXPECT_EQ(import_hf(dir, torch::kCPU, options).tokenizer.fingerprint(), tok_.fingerprint());
  options.tokenizer_dir = testing::tokenizer_variant_dir("bpe", true);
  const std::string msg = error_of([&] { import_hf(dir, torch::kCPU, options); });
  EXPECT_NE(msg.find("--tokenizer " + options.tokenizer_dir), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir + "/tokenizer.model differs"), std::string::npos) << msg;
  EXPECT_NE(msg.find(Tokenizer::load(options.tokenizer_dir).short_fingerprint()), std::string::npos)
      << msg;
}

TEST_F(HfLayoutDirs, ConfigTokenIdsOverridePieceNames) {
  // A tokenizer.model whose reward token is only named by config.json (as InternLM2 reward models
  // do).
  json c = internlm2_config(true);
  c["reward_token_id"] = 7;
  c["pad_token_id"] = 7;  // equal to the reward token: replaced, since padding must differ
  hftest::write_hf_dir(tmp_ / "ids", c, internlm2_tensors(true));
  LoadedModel lm = import_hf(tmp_ / "ids", torch::kCPU);
  EXPECT_EQ(lm.tokenizer.special().reward, 7);
  EXPECT_NE(lm.tokenizer.special().pad, 7);
  EXPECT_EQ(lm.tokenizer.special().reward_sep, tok_.special().reward_sep);

  c["reward_token_id"] = 100000;
  hftest::write_hf_dir(tmp_ / "bad_ids", c, internlm2_tensors(true));
  EXPECT_NE(error_of([&] {
              import_hf(tmp_ / "bad_ids", torch::kCPU);
            }).find("reward token id 100000 is outside"),
            std::string::npos);
}

TEST_F(HfLayoutDirs, LoadModelAndShapeAcceptAHfDirectory) {
  const std::string dir = tmp_ / "llama";
  hftest::write_hf_dir(dir,
                       hftest::hf_config_for(shape_, "LlamaForSequenceClassification", "llama"),
                       llama_tensors());
  ASSERT_TRUE(is_hf_directory(dir));
  EXPECT_EQ(load_model_shape(dir).to_json(), shape_.to_json());
  LoadedModel lm = load_model(dir, torch::kCPU);  // what model.init_from and `polar score` use
  EXPECT_EQ(rewards_of(lm.model, seqs_), rewards_of(model_, seqs_));
}

}  // namespace
}  // namespace polar::io
