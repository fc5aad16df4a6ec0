// LoRA on the tiny model: zero B starts exactly at the base; only adapters, head (and norms)
// train; A is peft's Kaiming-uniform; merging equals the adapted model; the fingerprint sees
// one changed weight and ignores the adapters; bad config is refused by key.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "model/tiny_model.h"
#include "polar/common/error.h"
#include "polar/config/train_config.h"
#include "polar/model/lora.h"

namespace polar {
namespace {

using nlohmann::json;

torch::Tensor rewards(RewardModel& model) {
  torch::NoGradGuard no_grad;
  model->eval();
  const int64_t T = 12;
  const auto t = torch::arange(5, 5 + T, torch::kInt64).view({1, T});
  return model->forward(t, torch::arange(T, torch::kInt64).view({1, T}),
                        torch::ones({1, T}, torch::kInt64),
                        torch::tensor(std::vector<int64_t>{T - 1, T / 2}, torch::kInt64));
}

LoraConfig rank(int64_t r) {
  LoraConfig c;
  c.rank = r;
  return c;
}

TEST(Lora, ZeroBStartsExactlyAtTheBase) {
  RewardModel model = testutil::tiny_model(testutil::tiny_config());
  const torch::Tensor before = rewards(model);
  EXPECT_EQ(add_lora(*model, rank(4), 1), 7 * 2);
  EXPECT_TRUE(torch::equal(before, rewards(model)));
}

TEST(Lora, OnlyAdaptersHeadAndOptionallyNormsTrain) {
  for (bool norms : {false, true}) {
    RewardModel model = testutil::tiny_model(testutil::tiny_config());
    LoraConfig c = rank(2);
    c.targets = {"v", "up"};
    c.train_norms = norms;
    add_lora(*model, c, 1);
    int64_t trainable = 0;
    for (const auto& p : model->named_parameters()) {
      const std::string& n = p.key();
      const bool want = is_lora_parameter(n) || n == "score.weight" ||
                        (norms && n.find("norm.weight") != std::string::npos);
      EXPECT_EQ(p.value().requires_grad(), want) << n;
      if (p.value().requires_grad()) trainable += p.value().numel();
      if (is_lora_parameter(n)) {
        EXPECT_TRUE(n.find("v_proj.lora_") != std::string::npos ||
                    n.find("up_proj.lora_") != std::string::npos)
            << n;
      }
    }
    EXPECT_EQ(trainable, c.trainable_parameters(model->config()));
    EXPECT_EQ(checkpoint_parameters(*model).size(),
              static_cast<size_t>(2 * 2 * 2 + 1 + (norms ? 2 * 2 + 1 : 0)));
  }
}

TEST(Lora, AIsKaimingUniformAsPeftDraws) {
  RewardModel model = testutil::tiny_model(testutil::tiny_config());
  add_lora(*model, rank(16), 3);
  const torch::Tensor a = model->named_parameters()["model.layers.0.mlp.down_proj.lora_A.weight"];
  const double in = 172, bound = 1.0 / std::sqrt(in);  // kaiming_uniform_(a=sqrt(5))
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{16, 172}));
  EXPECT_LE(a.abs().max().item<double>(), bound);
  EXPECT_NEAR(a.std().item<double>(), bound / std::sqrt(3.0), 0.05 * bound);
  EXPECT_EQ(model->named_parameters()["model.layers.0.mlp.down_proj.lora_B.weight"]
                .abs()
                .sum()
                .item<double>(),
            0.0);
}

TEST(Lora, MergeEqualsTheAdaptedModel) {
  RewardModel model = testutil::tiny_model(testutil::tiny_config(2, /*qkv_bias=*/true));
  add_lora(*model, rank(4), 1);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters())
      if (p.key().find("lora_B") != std::string::npos) p.value().normal_(0, 0.2);
  }
  const torch::Tensor adapted = rewards(model);
  merge_lora(*model);
  EXPECT_FALSE(has_lora(*model));
  for (const auto& p : model->named_parameters()) EXPECT_FALSE(is_lora_parameter(p.key()));
  const double diff = (rewards(model) - adapted).abs().max().item<double>();
  EXPECT_LE(diff, 1e-5);
  RewardModel plain = testutil::tiny_model(testutil::tiny_config(2, true));
  EXPECT_GT((rewards(plain) - adapted).abs().max().item<double>(), 1e-2);
}

TEST(Lora, FingerprintSeesOneWeightAndIgnoresTheAdapters) {
  RewardModel a = testutil::tiny_model(testutil::tiny_config());
  RewardModel b = testutil::tiny_model(testutil::tiny_config());
  const std::string fa = base_fingerprint(*a);
  EXPECT_EQ(fa.size(), 16u);
  EXPECT_EQ(fa, base_fingerprint(*b));
  add_lora(*b, rank(4), 1);
  EXPECT_EQ(fa, base_fingerprint(*b));
  {
    torch::NoGradGuard no_grad;
    b->named_parameters()["model.layers.1.self_attn.k_proj.weight"][3][5].add_(1e-6);
  }
  EXPECT_NE(fa, base_fingerprint(*b));
}

TEST(Lora, BadConfigIsRefusedByKey) {
  const auto parse_error = [](const json& model) {
    try {
      TrainConfig::from_json(json{{"model", model}}, "cfg");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(
      parse_error({{"lora", {{"rank", 4}, {"targets", {"q", "wqkv"}}}}}).find("model.lora.targets"),
      std::string::npos);
  EXPECT_NE(parse_error({{"lora", {{"rank", -1}}}}).find("model.lora.rank"), std::string::npos);
  EXPECT_NE(parse_error({{"lora", {{"rank", 4}, {"init", "orthogonal"}}}}).find("init"),
            std::string::npos);
  EXPECT_NE(parse_error({{"lora", {{"rank", 4}, {"alpah", 4}}}}).find("alpah"), std::string::npos);
  try {
    TrainConfig::from_json(json{{"model", {{"lora", {{"rank", 4}, {"dropout", 0.1}}}}},
                                {"train", {{"activation_checkpointing", "blocks"}}}},
                           "cfg");
    ADD_FAILURE() << "dropout with checkpointing accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dropout"), std::string::npos) << e.what();
  }
  // The section round-trips through the resolved config.
  const TrainConfig c =
      TrainConfig::from_json(json{{"model", {{"lora", {{"rank", 8}, {"alpha", 32}}}}}}, "cfg");
  EXPECT_EQ(c.model.lora.scale(), 4.0);
  EXPECT_EQ(TrainConfig::from_json(c.to_json(), "again").model.lora.to_json(),
            c.model.lora.to_json());
  RewardModel model = testutil::tiny_model(testutil::tiny_config());
  add_lora(*model, rank(2), 1);
  EXPECT_THROW(add_lora(*model, rank(2), 1), Error);
}

}  // namespace
}  // namespace polar
