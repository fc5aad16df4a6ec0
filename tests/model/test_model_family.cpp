// The model-family registry: lookups by name, Hugging Face class and export format, and the
// messages that list what is known when a lookup fails.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "polar/common/error.h"
#include "polar/model/config.h"
#include "polar/model/family.h"

namespace polar {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

ModelConfig shape_of(const std::string& family, bool qkv_bias) {
  ModelConfig c;
  c.architecture = family;
  c.qkv_bias = qkv_bias;
  return c;
}

TEST(ModelFamily, LooksUpByNameAndEnum) {
  EXPECT_EQ(family_by_name("llama").family, ModelFamily::Llama);
  EXPECT_EQ(family_by_name("qwen2").family, ModelFamily::Qwen2);
  EXPECT_EQ(family_by_name("qwen3").family, ModelFamily::Qwen3);
  EXPECT_EQ(family_by_name("internlm2").family, ModelFamily::InternLM2);
  for (const auto& f : model_families()) {
    EXPECT_EQ(&family_info(f.family), &f);
    EXPECT_EQ(&family_by_name(f.name), &f);
    EXPECT_EQ(&shape_of(f.name, false).family(), &f);
  }
}

TEST(ModelFamily, UnknownNameListsTheKnownOnes) {
  const std::string msg = error_of([] { family_by_name("gpt2"); });
  EXPECT_NE(msg.find("unknown model family \"gpt2\""), std::string::npos) << msg;
  for (const char* known : {"llama", "qwen2", "qwen3", "internlm2"})
    EXPECT_NE(msg.find(known), std::string::npos) << msg;
  EXPECT_NE(error_of([] { family_by_name("Llama"); }), "");  // names are exact
  const std::string validate = error_of([] { shape_of("mistral", false).validate(); });
  EXPECT_NE(validate.find("model.architecture: unknown model family \"mistral\""),
            std::string::npos)
      << validate;
}

TEST(ModelFamily, LooksUpByHuggingFaceClass) {
  const struct {
    const char* cls;
    ModelFamily family;
    bool reward_head;
  } cases[] = {
      {"LlamaForCausalLM", ModelFamily::Llama, false},
      {"LlamaForSequenceClassification", ModelFamily::Llama, true},
      {"Qwen2ForCausalLM", ModelFamily::Qwen2, false},
      {"Qwen2ForSequenceClassification", ModelFamily::Qwen2, true},
      {"Qwen3ForCausalLM", ModelFamily::Qwen3, false},
      {"Qwen3ForSequenceClassification", ModelFamily::Qwen3, true},
      {"InternLM2ForCausalLM", ModelFamily::InternLM2, false},
      {"InternLM2ForRewardModel", ModelFamily::InternLM2, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.cls);
    const HfClass found = family_by_hf_class(c.cls);
    EXPECT_EQ(found.family->family, c.family);
    EXPECT_EQ(found.reward_head, c.reward_head);
  }
}

TEST(ModelFamily, UnknownClassListsTheImportedOnes) {
  const std::string msg = error_of([] { family_by_hf_class("MistralForCausalLM"); });
  EXPECT_NE(msg.find("unsupported architecture \"MistralForCausalLM\""), std::string::npos) << msg;
  for (const auto& f : model_families()) {
    EXPECT_NE(msg.find(f.causal_lm_class), std::string::npos) << msg;
    EXPECT_NE(msg.find(f.reward_class), std::string::npos) << msg;
  }
  EXPECT_NE(error_of([] { family_by_hf_class("LlamaForTokenClassification"); }), "");
}

TEST(ModelFamily, ExportFormatsPickTheFamilyThatHoldsTheShape) {
  EXPECT_EQ(export_formats(), (std::vector<std::string>{"hf-llama", "hf-internlm2"}));
  // auto: the model's own family's format; hf-llama writes q/k/v biases as Qwen2.
  EXPECT_EQ(export_family("auto", shape_of("llama", false)).family, ModelFamily::Llama);
  EXPECT_EQ(export_family("auto", shape_of("qwen2", true)).family, ModelFamily::Qwen2);
  EXPECT_EQ(export_family("auto", shape_of("llama", true)).family, ModelFamily::Qwen2);
  EXPECT_EQ(export_family("auto", shape_of("qwen2", false)).family, ModelFamily::Llama);
  EXPECT_EQ(export_family("auto", shape_of("internlm2", true)).family, ModelFamily::InternLM2);
  EXPECT_EQ(export_family("hf-internlm2", shape_of("llama", false)).family, ModelFamily::InternLM2);
  EXPECT_EQ(export_family("hf-llama", shape_of("internlm2", false)).family, ModelFamily::Llama);
  // q/k norms are Qwen3's alone: hf-llama writes them as Qwen3, hf-internlm2 cannot.
  EXPECT_EQ(export_family("auto", shape_of("qwen3", false)).family, ModelFamily::Qwen3);
  EXPECT_EQ(export_family("hf-llama", shape_of("qwen3", false)).family, ModelFamily::Qwen3);
  const std::string qk = error_of([] { export_family("hf-internlm2", shape_of("qwen3", false)); });
  EXPECT_NE(qk.find("with q/k norms"), std::string::npos) << qk;
  const std::string msg = error_of([] { export_family("gguf", shape_of("llama", false)); });
  EXPECT_NE(msg.find("export --format: expected auto, hf-llama, hf-internlm2, got \"gguf\""),
            std::string::npos)
      << msg;
}

// Each entry is complete: distinct names and classes, a default format that writes the family's
// own shapes, and config keys that name the family's class.
TEST(ModelFamily, EntriesAreCompleteAndDistinct) {
  std::set<std::string> names, classes;
  for (const auto& f : model_families()) {
    SCOPED_TRACE(f.name);
    EXPECT_TRUE(names.insert(f.name).second);
    EXPECT_TRUE(classes.insert(f.causal_lm_class).second);
    EXPECT_TRUE(classes.insert(f.reward_class).second);
    ASSERT_NE(f.write_config_keys, nullptr);
    EXPECT_GT(f.default_max_position, 0);
    const bool bias = f.export_bias == ExportBias::With;
    EXPECT_EQ(&export_family(f.export_format, shape_of(f.name, bias)), &f);
    nlohmann::json keys = nlohmann::json::object();
    f.write_config_keys(shape_of(f.name, bias), keys);
    EXPECT_FALSE(keys.empty());
    EXPECT_FALSE(keys.contains("architectures"));  // shared keys are written once, by export
  }
}

}  // namespace
}  // namespace polar
