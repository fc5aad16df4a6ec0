// ModelConfig: JSON round trip, rejected keys and shapes, exact parameter count, FLOPs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "polar/common/error.h"
#include "polar/model/config.h"
#include "polar/model/reward_model.h"
#include "tiny_model.h"

namespace polar {
namespace {

using nlohmann::json;

std::string error_of(const json& j) {
  try {
    ModelConfig::from_json(j, "cfg.json: model");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelConfig, JsonRoundTrip) {
  ModelConfig c = testutil::tiny_config(2, true);
  c.rope_theta = 500000.0;
  c.rope_scaling = 4.0;
  c.rms_eps = 1e-5;
  c.tie_embeddings = true;
  c.max_position = 32768;
  const json j = c.to_json();
  const ModelConfig back = ModelConfig::from_json(j, "x");
  EXPECT_EQ(back.to_json(), j);
  EXPECT_EQ(back.architecture, "qwen2");
  EXPECT_EQ(back.num_kv_heads, 2);
  EXPECT_TRUE(back.qkv_bias);
  EXPECT_TRUE(back.tie_embeddings);
  EXPECT_DOUBLE_EQ(back.rope_scaling, 4.0);
  // Qwen3's explicit head_dim and llama3 RoPE survive too.
  ModelConfig q = testutil::tiny_qwen3_config();
  q.rope_type = RopeType::Llama3;
  q.rope_scaling = 32.0;
  q.rope_original_max_position = 8192;
  const ModelConfig q_back = ModelConfig::from_json(q.to_json(), "x");
  EXPECT_EQ(q_back.to_json(), q.to_json());
  EXPECT_EQ(q_back.head_size(), 24);
  EXPECT_TRUE(q_back.qk_norm());
  EXPECT_EQ(q_back.rope_type, RopeType::Llama3);
  // Absent keys keep their defaults.
  EXPECT_EQ(ModelConfig::from_json(json::object(), "x").to_json(), ModelConfig().to_json());
}

TEST(ModelConfig, RejectsUnknownKeysAndWrongTypes) {
  EXPECT_NE(error_of({{"hidden_sise", 64}}).find("hidden_sise"), std::string::npos);
  const std::string wrong_type = error_of({{"hidden_size", "64"}});
  EXPECT_NE(wrong_type.find("hidden_size"), std::string::npos) << wrong_type;
  EXPECT_NE(error_of({{"qkv_bias", 1}}).find("qkv_bias"), std::string::npos);
}

TEST(ModelConfig, ValidateNamesTheBadField) {
  const std::string heads = error_of({{"hidden_size", 66}, {"num_heads", 4}});
  EXPECT_NE(heads.find("num_heads"), std::string::npos) << heads;
  EXPECT_NE(heads.find("cfg.json: model"), std::string::npos) << heads;
  const std::string kv = error_of({{"num_heads", 4}, {"num_kv_heads", 3}});
  EXPECT_NE(kv.find("num_kv_heads"), std::string::npos) << kv;
  EXPECT_NE(error_of({{"vocab_size", 0}}).find("vocab_size"), std::string::npos);
  EXPECT_NE(error_of({{"num_layers", -1}}).find("num_layers"), std::string::npos);
  EXPECT_NE(error_of({{"rms_eps", 0.0}}).find("rms_eps"), std::string::npos);
  EXPECT_NE(error_of({{"rope_scaling", 0.0}}).find("rope_scaling"), std::string::npos);
  EXPECT_NE(error_of({{"architecture", "gpt2"}}).find("architecture"), std::string::npos);
  // hidden 12 over 4 heads gives head_dim 3: odd, so RoPE cannot rotate it.
  EXPECT_NE(error_of({{"hidden_size", 12}, {"num_heads", 4}}).find("even"), std::string::npos);
  EXPECT_EQ(error_of({{"hidden_size", 64}, {"num_heads", 4}, {"num_kv_heads", 1}}), "");
  // An explicit head_dim lifts the divisibility rule; llama3 RoPE needs high > low.
  EXPECT_EQ(error_of({{"hidden_size", 66}, {"num_heads", 4}, {"head_dim", 16}}), "");
  EXPECT_NE(error_of({{"rope_type", "yarn"}}).find("rope_type"), std::string::npos);
  const std::string ramp = error_of(
      {{"rope_type", "llama3"}, {"rope_low_freq_factor", 4.0}, {"rope_high_freq_factor", 1.0}});
  EXPECT_NE(ramp.find("rope_high_freq_factor"), std::string::npos) << ramp;
}

TEST(ModelConfig, NumParametersByHand) {
  // Tiny: V 512, H 64, 2 layers, 4 heads, 2 kv heads (kv dim 32), intermediate 172.
  // Layer: q 64*64 + k,v 2*64*32 + o 64*64 + mlp 3*64*172 + 2 norms*64 = 45440.
  const ModelConfig c = testutil::tiny_config(2, false);
  EXPECT_EQ(c.num_parameters(), 512 * 64 + 2 * 45440 + 64 + 64);
  // qkv bias: + 64 + 32 + 32 per layer.
  EXPECT_EQ(testutil::tiny_config(2, true).num_parameters(), 512 * 64 + 2 * (45440 + 128) + 128);
  // Qwen3, head_dim 24 (q 96 wide, kv 48): q 64*96 + k,v 2*64*48 + o 96*64 + mlp 3*64*172 +
  // 2 norms*64 + q/k norms 2*24 = 51632.
  EXPECT_EQ(testutil::tiny_qwen3_config().num_parameters(), 512 * 64 + 2 * 51632 + 64 + 64);
}

TEST(ModelConfig, NumParametersEqualsModule) {
  std::vector<ModelConfig> configs = {testutil::tiny_config(4, false),
                                      testutil::tiny_config(2, true),
                                      testutil::tiny_config(1, false)};
  ModelConfig odd = testutil::tiny_config(2, true);
  odd.num_layers = 3;
  odd.hidden_size = 48;
  odd.num_heads = 6;
  odd.intermediate_size = 100;
  odd.vocab_size = 77;
  odd.tie_embeddings = true;  // no LM head: does not change the count
  configs.push_back(odd);
  configs.push_back(testutil::tiny_qwen3_config(1));
  configs.push_back(testutil::tiny_llama3_config());
  for (const ModelConfig& c : configs) {
    RewardModel model(c);
    int64_t count = 0;
    for (const auto& p : model->parameters()) count += p.numel();
    EXPECT_EQ(c.num_parameters(), count) << c.to_json().dump();
  }
}

TEST(ModelConfig, FlopsPerToken) {
  // 2 * layer matmul weights (2 * 45312) + 2 * 2 * layers * seq_len * hidden.
  const ModelConfig c = testutil::tiny_config(2, false);
  EXPECT_DOUBLE_EQ(c.flops_per_token(128), 2.0 * 2 * 45312 + 4.0 * 2 * 128 * 64);
  EXPECT_DOUBLE_EQ(c.flops_per_token(256) - c.flops_per_token(128), 4.0 * 2 * 128 * 64);
}

}  // namespace
}  // namespace polar
