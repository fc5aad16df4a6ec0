// config.json mapping of the Hugging Face import: transformers 4.x and 5.x RoPE spellings,
// refused settings with messages naming the key, and export configs that import back exactly.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "polar/checkpoint/hf.h"
#include "polar/common/error.h"

namespace polar::io {
namespace {

using nlohmann::json;

json llama_config() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 11008,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "rope_scaling": null,
    "hidden_act": "silu", "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": [2, 7],
    "pad_token_id": null, "initializer_range": 0.02, "torch_dtype": "bfloat16", "pretraining_tp": 1})");
}

// The message of the polar::Error thrown by parse_hf_config, or "" when none is thrown.
std::string error_of(const json& config) {
  try {
    parse_hf_config(config, "x/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(HfConfig, MapsLlamaKeys) {
  const HfModelInfo info = parse_hf_config(llama_config(), "x/config.json");
  EXPECT_EQ(info.architecture_class, "LlamaForCausalLM");
  EXPECT_FALSE(info.has_reward_head);
  const ModelConfig& s = info.shape;
  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.vocab_size, 32000);
  EXPECT_EQ(s.hidden_size, 4096);
  EXPECT_EQ(s.num_layers, 32);
  EXPECT_EQ(s.num_heads, 32);
  EXPECT_EQ(s.num_kv_heads, 8);
  EXPECT_EQ(s.intermediate_size, 11008);
  EXPECT_EQ(s.max_position, 4096);
  EXPECT_DOUBLE_EQ(s.rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(s.rope_scaling, 1.0);
  EXPECT_DOUBLE_EQ(s.rms_eps, 1e-5);
  EXPECT_FALSE(s.qkv_bias);
  EXPECT_FALSE(s.tie_embeddings);
  EXPECT_EQ(info.bos_token_id, 1);
  EXPECT_EQ(info.eos_token_id, 2);   // the first of a list
  EXPECT_EQ(info.pad_token_id, -1);  // null
}

TEST(HfConfig, KvHeadsDefaultToHeads) {
  json c = llama_config();
  c.erase("num_key_value_heads");
  EXPECT_EQ(parse_hf_config(c, "x").shape.num_kv_heads, 32);
}

TEST(HfConfig, LinearRopeScalingInEverySpelling) {
  json v4_type = llama_config();
  v4_type["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  json v4_rope_type = llama_config();
  v4_rope_type["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.5}};
  json v5 = llama_config();
  v5.erase("rope_theta");
  v5["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 1e6}, {"factor", 8.0}};
  EXPECT_DOUBLE_EQ(parse_hf_config(v4_type, "x").shape.rope_scaling, 4.0);
  EXPECT_DOUBLE_EQ(parse_hf_config(v4_rope_type, "x").shape.rope_scaling, 2.5);
  const ModelConfig s5 = parse_hf_config(v5, "x").shape;
  EXPECT_DOUBLE_EQ(s5.rope_scaling, 8.0);
  EXPECT_DOUBLE_EQ(s5.rope_theta, 1e6);
  json v5_default = llama_config();
  v5_default["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1234.0}};
  EXPECT_DOUBLE_EQ(parse_hf_config(v5_default, "x").shape.rope_scaling, 1.0);
  EXPECT_DOUBLE_EQ(parse_hf_config(v5_default, "x").shape.rope_theta, 1234.0);
}

TEST(HfConfig, DynamicRopeIsPlainUpToMaxPositionAndSaysSo) {
  json c = llama_config();
  c["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  const HfModelInfo info = parse_hf_config(c, "x");
  EXPECT_DOUBLE_EQ(info.shape.rope_scaling, 1.0);
  EXPECT_EQ(info.shape.max_position, 4096);
  ASSERT_EQ(info.notes.size(), 1u);
  EXPECT_NE(info.notes[0].find("dynamic"), std::string::npos) << info.notes[0];
  EXPECT_NE(info.notes[0].find("4096"), std::string::npos) << info.notes[0];
}

TEST(HfConfig, ReadsLlama3RopeScaling) {
  // Llama 3.1's config.json (transformers 4.x spelling) and 5.x's rope_parameters.
  json v4 = llama_config();
  v4["rope_scaling"] = {{"rope_type", "llama3"},
                        {"factor", 8.0},
                        {"low_freq_factor", 1.0},
                        {"high_freq_factor", 4.0},
                        {"original_max_position_embeddings", 8192}};
  json v5 = llama_config();
  v5["rope_parameters"] = v4["rope_scaling"];
  v5["rope_parameters"]["rope_theta"] = 500000.0;
  for (const json& c : {v4, v5}) {
    const ModelConfig s = parse_hf_config(c, "x").shape;
    EXPECT_EQ(s.rope_type, RopeType::Llama3);
    EXPECT_DOUBLE_EQ(s.rope_scaling, 8.0);
    EXPECT_DOUBLE_EQ(s.rope_low_freq_factor, 1.0);
    EXPECT_DOUBLE_EQ(s.rope_high_freq_factor, 4.0);
    EXPECT_EQ(s.rope_original_max_position, 8192);
    EXPECT_DOUBLE_EQ(s.rope_theta, 500000.0);
  }
  // Every key is required, as transformers requires it.
  for (const char* key :
       {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
    json c = v4;
    c["rope_scaling"].erase(key);
    EXPECT_NE(error_of(c).find(key), std::string::npos) << key;
  }
  // The export writes the same keys back (both spellings).
  const json out = hf_export_config(parse_hf_config(v4, "x").shape, "auto", "fp32", 1, 2, 0, 3);
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    EXPECT_EQ(out[key]["rope_type"], "llama3") << key;
    EXPECT_EQ(out[key]["original_max_position_embeddings"], 8192) << key;
    EXPECT_EQ(out[key]["low_freq_factor"], 1.0) << key;
  }
  EXPECT_EQ(parse_hf_config(out, "x").shape.to_json(), parse_hf_config(v4, "x").shape.to_json());
}

TEST(HfConfig, ReadsQwen3HeadDimAndQkNorm) {
  json c = llama_config();
  c["architectures"] = {"Qwen3ForCausalLM"};
  c["model_type"] = "qwen3";
  c["hidden_size"] = 1024;
  c["num_attention_heads"] = 16;
  c["head_dim"] = 128;  // Qwen3-0.6B: 16 heads of 128 over a hidden size of 1024
  c["tie_word_embeddings"] = true;
  c["attention_bias"] = false;
  c["layer_types"] = json::array({"full_attention", "full_attention"});
  const ModelConfig s = parse_hf_config(c, "x").shape;
  EXPECT_EQ(s.architecture, "qwen3");
  EXPECT_EQ(s.head_size(), 128);
  EXPECT_EQ(s.q_size(), 2048);
  EXPECT_TRUE(s.qk_norm());
  EXPECT_FALSE(s.qkv_bias);
  EXPECT_TRUE(s.tie_embeddings);
  // Without the key, Qwen3Config's default head_dim of 128 holds, not hidden / heads.
  c.erase("head_dim");
  EXPECT_EQ(parse_hf_config(c, "x").shape.head_size(), 128);
  // A Llama head_dim equal to hidden / heads is stored as derived.
  json l = llama_config();
  l["head_dim"] = 128;
  EXPECT_EQ(parse_hf_config(l, "x").shape.head_dim, 0);
}

TEST(HfConfig, RefusesOtherRopeTypesNamingThem) {
  for (const char* type : {"yarn", "longrope", "ntk"}) {
    json c = llama_config();
    c["rope_scaling"] = {{"rope_type", type}, {"factor", 8.0}};
    const std::string msg = error_of(c);
    EXPECT_NE(msg.find(std::string("\"") + type + "\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("rope_scaling"), std::string::npos) << msg;
    EXPECT_NE(msg.find("linear"), std::string::npos) << msg;  // says what is supported
  }
  json bad_factor = llama_config();
  bad_factor["rope_scaling"] = {{"type", "linear"}, {"factor", -1.0}};
  EXPECT_NE(error_of(bad_factor).find("factor"), std::string::npos);
}

TEST(HfConfig, UnsupportedArchitectureIsNamed) {
  json c = llama_config();
  c["architectures"] = {"MistralForCausalLM"};
  const std::string msg = error_of(c);
  EXPECT_NE(msg.find("unsupported architecture \"MistralForCausalLM\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("InternLM2ForRewardModel"), std::string::npos)
      << msg;  // lists what is supported
  c.erase("architectures");
  EXPECT_NE(error_of(c).find("architectures"), std::string::npos);
}

TEST(HfConfig, RefusesWhatTheModelCannotReproduce) {
  auto with = [](const char* key, json value) {
    json c = llama_config();
    c[key] = std::move(value);
    return error_of(c);
  };
  EXPECT_NE(with("hidden_act", "gelu").find("hidden_act"), std::string::npos);
  EXPECT_NE(with("head_dim", -64).find("head_dim"), std::string::npos);
  EXPECT_EQ(with("head_dim", 64), "");  // a head_dim apart from hidden / heads is read
  EXPECT_NE(with("mlp_bias", true).find("mlp_bias"), std::string::npos);
  EXPECT_NE(with("partial_rotary_factor", 0.5).find("partial_rotary_factor"), std::string::npos);
  EXPECT_NE(with("model_type", "mistral").find("model_type"), std::string::npos);
  EXPECT_NE(with("hidden_size", "4096").find("\"hidden_size\": expected an integer"),
            std::string::npos);
  EXPECT_NE(with("num_key_value_heads", 5).find("num_kv_heads"), std::string::npos);  // 32 % 5 != 0
  json missing = llama_config();
  missing.erase("intermediate_size");
  EXPECT_NE(error_of(missing).find("\"intermediate_size\" is missing"), std::string::npos);
}

TEST(HfConfig, SequenceClassificationNeedsOneLabel) {
  json c = llama_config();
  c["architectures"] = {"LlamaForSequenceClassification"};
  EXPECT_TRUE(parse_hf_config(c, "x").has_reward_head);
  c["id2label"] = {{"0", "NEG"}, {"1", "POS"}};
  EXPECT_NE(error_of(c).find("2 labels"), std::string::npos);
}

TEST(HfConfig, Qwen2HasQkvBiasAndNoSlidingWindow) {
  json c = llama_config();
  c["architectures"] = {"Qwen2ForSequenceClassification"};
  c["model_type"] = "qwen2";
  c["use_sliding_window"] = false;
  c["sliding_window"] = 4096;
  const HfModelInfo info = parse_hf_config(c, "x");
  EXPECT_EQ(info.shape.architecture, "qwen2");
  EXPECT_TRUE(info.shape.qkv_bias);
  EXPECT_FALSE(info.has_o_bias);
  c["use_sliding_window"] = true;
  EXPECT_NE(error_of(c).find("use_sliding_window"), std::string::npos);
  c["use_sliding_window"] = false;
  c["layer_types"] = {"full_attention", "sliding_attention"};
  EXPECT_NE(error_of(c).find("layer_types"), std::string::npos);
}

TEST(HfConfig, InternLM2BiasAndRewardToken) {
  json c = llama_config();
  c["architectures"] = {"InternLM2ForRewardModel"};
  c["model_type"] = "internlm2";
  c["reward_token_id"] = 92527;
  c["bias"] = false;
  HfModelInfo info = parse_hf_config(c, "x");
  EXPECT_EQ(info.shape.architecture, "internlm2");
  EXPECT_TRUE(info.has_reward_head);
  EXPECT_FALSE(info.shape.qkv_bias);
  EXPECT_EQ(info.reward_token_id, 92527);
  c["bias"] = true;
  info = parse_hf_config(c, "x");
  EXPECT_TRUE(info.shape.qkv_bias);
  EXPECT_TRUE(info.has_o_bias);  // wqkv and wo biases share the switch; wo's must be zero
}

TEST(HfConfig, LlamaAttentionBiasMeansQkvAndOutputBias) {
  json c = llama_config();
  c["attention_bias"] = true;
  const HfModelInfo info = parse_hf_config(c, "x");
  EXPECT_TRUE(info.shape.qkv_bias);
  EXPECT_TRUE(info.has_o_bias);
}

// Whatever export writes, import reads back as the same shape (both formats, with scaling,
// biases and tied embeddings), and the pad token is never the reward token.
TEST(HfConfig, ExportConfigsImportBackExactly) {
  ModelConfig s;
  s.vocab_size = 320;
  s.hidden_size = 48;
  s.num_layers = 3;
  s.num_heads = 6;
  s.num_kv_heads = 2;
  s.intermediate_size = 100;
  s.max_position = 8192;
  s.rope_theta = 1e6;
  s.rope_scaling = 2.0;
  s.rms_eps = 1e-5;
  s.init_std = 0.01;
  for (const char* format : {"hf-llama", "hf-internlm2"}) {
    for (bool bias : {false, true}) {
      SCOPED_TRACE(std::string(format) + (bias ? " with q/k/v bias" : ""));
      s.qkv_bias = bias;
      s.tie_embeddings = bias;
      s.architecture =
          std::string(format) == "hf-internlm2" ? "internlm2" : (bias ? "qwen2" : "llama");
      const json c = hf_export_config(s, format, "fp32", 1, 2, 3, 5);
      const HfModelInfo info = parse_hf_config(c, "export");
      EXPECT_EQ(info.shape.to_json(), s.to_json());
      EXPECT_TRUE(info.has_reward_head);
      EXPECT_EQ(info.pad_token_id, 3);
      EXPECT_EQ(info.reward_token_id, 5);
      EXPECT_EQ(c["torch_dtype"], "float32");
    }
  }
  s.qkv_bias = true;
  EXPECT_EQ(hf_export_config(s, "hf-llama", "bf16", 1, 2, 3, 5)["architectures"][0],
            "Qwen2ForSequenceClassification");
  s.qkv_bias = false;
  const json llama = hf_export_config(s, "hf-llama", "bf16", 1, 2, 3, 5);
  EXPECT_EQ(llama["architectures"][0], "LlamaForSequenceClassification");
  EXPECT_EQ(llama["id2label"].size(), 1u);
  EXPECT_EQ(llama["torch_dtype"], "bfloat16");
  const json internlm2 = hf_export_config(s, "hf-internlm2", "bf16", 1, 2, 3, 5);
  EXPECT_EQ(internlm2["auto_map"]["AutoModel"], "modeling_internlm2.InternLM2ForRewardModel");
  EXPECT_EQ(internlm2["auto_map"]["AutoConfig"], "configuration_internlm2.InternLM2Config");
  EXPECT_EQ(internlm2["rope_scaling"],
            json({{"type", "linear"}, {"factor", 2.0}}));  // the two keys InternLM2 accepts
}

}  // namespace
}  // namespace polar::io
