// The model-family registry: one entry per family, and lookups that name the known ones.
#include "polar/model/family.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "polar/common/error.h"
#include "polar/model/config.h"

namespace polar {

namespace {

using nlohmann::json;

// The RoPE scaling keys transformers reads for `s` (without rope_theta); null for plain RoPE.
json rope_scaling_keys(const ModelConfig& s) {
  if (s.rope_type == RopeType::Linear && s.rope_scaling == 1.0) return json(nullptr);
  const char* type = choice_name(s.rope_type);
  json j = {{"type", type}, {"rope_type", type}, {"factor", s.rope_scaling}};
  if (s.rope_type == RopeType::Llama3) {
    j["low_freq_factor"] = s.rope_low_freq_factor;
    j["high_freq_factor"] = s.rope_high_freq_factor;
    j["original_max_position_embeddings"] = s.rope_original_max_position;
  }
  return j;
}

// Keys of transformers' own sequence-classification configs (Llama, Qwen2, Qwen3 and their kin).
void transformers_keys(const ModelConfig& s, json& c) {
  c["head_dim"] = s.head_size();
  // Both spellings: transformers 4.x reads rope_theta/rope_scaling, 5.x rope_parameters.
  const json scaling = rope_scaling_keys(s);
  c["rope_scaling"] = scaling;
  json rope_parameters = scaling.is_null() ? json{{"rope_type", "default"}} : scaling;
  rope_parameters.erase("type");
  rope_parameters["rope_theta"] = s.rope_theta;
  c["rope_parameters"] = rope_parameters;
  c["id2label"] = {{"0", "LABEL_0"}};
  c["label2id"] = {{"LABEL_0", 0}};
}

void llama_keys(const ModelConfig& s, json& c) {
  transformers_keys(s, c);
  // attention_bias would add an o_proj bias too: a model with q/k/v biases is written as Qwen2.
  c["attention_bias"] = false;
  c["mlp_bias"] = false;
}

void qwen2_keys(const ModelConfig& s, json& c) {
  transformers_keys(s, c);
  c["use_sliding_window"] = false;
  c["max_window_layers"] = s.num_layers;
}

void qwen3_keys(const ModelConfig& s, json& c) {
  qwen2_keys(s, c);
  c["attention_bias"] = false;  // it would add an o_proj bias too; Qwen3 is written without
}

void internlm2_keys(const ModelConfig& s, json& c) {
  // InternLM2Config accepts rope_scaling {"type", "factor"} with factor > 1 only.
  POLAR_CHECK(s.rope_type == RopeType::Linear, "export hf-internlm2: rope_type ",
              choice_name(s.rope_type),
              " cannot be written in InternLM2's config; use --format hf-llama");
  POLAR_CHECK(s.rope_scaling == 1.0 || s.rope_scaling > 1.0,
              "export hf-internlm2: linear RoPE factor ", s.rope_scaling,
              " < 1 cannot be written in InternLM2's config; use --format hf-llama");
  c["rope_scaling"] =
      s.rope_scaling == 1.0 ? json(nullptr) : json{{"type", "linear"}, {"factor", s.rope_scaling}};
  c["auto_map"] = {{"AutoConfig", "configuration_internlm2.InternLM2Config"},
                   {"AutoModel", "modeling_internlm2.InternLM2ForRewardModel"}};
  c["attn_implementation"] = "eager";
  c["bias"] = s.qkv_bias;  // wqkv and wo biases share it; wo's is written as zero
}

// The remote code POLAR's InternLM2 checkpoints name in auto_map.
const RemoteCode kInternLM2Code{
    "modeling_internlm2.py",
    {"configuration_internlm2.py", "modeling_internlm2.py", "tokenization_internlm2.py",
     "tokenization_internlm2_fast.py"},
    "tokenization_internlm2.py",
    "InternLM2Tokenizer",
    "tokenization_internlm2.InternLM2Tokenizer",
};

const std::vector<FamilyInfo> kFamilies = {
    {
        /*family=*/ModelFamily::Llama,
        /*name=*/"llama",
        /*display_name=*/"Llama",
        /*causal_lm_class=*/"LlamaForCausalLM",
        /*reward_class=*/"LlamaForSequenceClassification",
        /*default_max_position=*/2048,
        /*bias_key=*/"attention_bias",
        /*default_head_dim=*/0,
        /*qk_norm=*/false,
        /*export_format=*/"hf-llama",
        /*export_bias=*/ExportBias::Without,
        /*write_config_keys=*/llama_keys,
        /*remote_code=*/nullptr,
    },
    {
        /*family=*/ModelFamily::Qwen2,
        /*name=*/"qwen2",
        /*display_name=*/"Qwen2",
        /*causal_lm_class=*/"Qwen2ForCausalLM",
        /*reward_class=*/"Qwen2ForSequenceClassification",
        /*default_max_position=*/32768,
        /*bias_key=*/nullptr,
        /*default_head_dim=*/0,
        /*qk_norm=*/false,
        /*export_format=*/"hf-llama",
        /*export_bias=*/ExportBias::With,
        /*write_config_keys=*/qwen2_keys,
        /*remote_code=*/nullptr,
    },
    {
        /*family=*/ModelFamily::Qwen3,
        /*name=*/"qwen3",
        /*display_name=*/"Qwen3",
        /*causal_lm_class=*/"Qwen3ForCausalLM",
        /*reward_class=*/"Qwen3ForSequenceClassification",
        /*default_max_position=*/32768,
        /*bias_key=*/"attention_bias",
        /*default_head_dim=*/128,
        /*qk_norm=*/true,
        /*export_format=*/"hf-llama",
        /*export_bias=*/ExportBias::Without,
        /*write_config_keys=*/qwen3_keys,
        /*remote_code=*/nullptr,
    },
    {
        /*family=*/ModelFamily::InternLM2,
        /*name=*/"internlm2",
        /*display_name=*/"InternLM2",
        /*causal_lm_class=*/"InternLM2ForCausalLM",
        /*reward_class=*/"InternLM2ForRewardModel",
        /*default_max_position=*/2048,
        /*bias_key=*/"bias",
        /*default_head_dim=*/0,
        /*qk_norm=*/false,
        /*export_format=*/"hf-internlm2",
        /*export_bias=*/ExportBias::Either,
        /*write_config_keys=*/internlm2_keys,
        /*remote_code=*/&kInternLM2Code,
    },
};

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

bool admits(ExportBias rule, bool qkv_bias) {
  return rule == ExportBias::Either || (rule == ExportBias::With) == qkv_bias;
}

}  // namespace

const std::vector<FamilyInfo>& model_families() { return kFamilies; }

const FamilyInfo& family_info(ModelFamily family) {
  for (const auto& f : kFamilies) {
    if (f.family == family) return f;
  }
  throw Error("model family " + std::to_string(static_cast<int>(family)) +
              " has no registry entry");
}

const FamilyInfo& family_by_name(const std::string& name) {
  std::vector<std::string> known;
  for (const auto& f : kFamilies) {
    if (name == f.name) return f;
    known.emplace_back(f.name);
  }
  throw Error("unknown model family \"" + name + "\"; expected one of " + joined(known));
}

HfClass family_by_hf_class(const std::string& cls) {
  std::vector<std::string> known;
  for (const auto& f : kFamilies) {
    if (cls == f.causal_lm_class) return {&f, false};
    if (cls == f.reward_class) return {&f, true};
    known.insert(known.end(), {f.causal_lm_class, f.reward_class});
  }
  throw Error("unsupported architecture \"" + cls + "\"; polar imports " + joined(known));
}

std::vector<std::string> export_formats() {
  std::vector<std::string> out;
  for (const auto& f : kFamilies) {
    if (std::find(out.begin(), out.end(), f.export_format) == out.end())
      out.emplace_back(f.export_format);
  }
  return out;
}

const FamilyInfo& export_family(const std::string& format, const ModelConfig& shape) {
  const std::string resolved =
      format == "auto" ? family_by_name(shape.architecture).export_format : format;
  bool known = false;
  for (const auto& f : kFamilies) {
    if (resolved != f.export_format) continue;
    known = true;
    if (admits(f.export_bias, shape.qkv_bias) && f.qk_norm == shape.qk_norm()) return f;
  }
  POLAR_CHECK(known, "export --format: expected auto, ", joined(export_formats()), ", got \"",
              format, "\"");
  throw Error("export --format " + resolved + ": no family of this format holds a model " +
              (shape.qkv_bias ? "with" : "without") + " q/k/v biases and " +
              (shape.qk_norm() ? "with" : "without") + " q/k norms");
}

}  // namespace polar
