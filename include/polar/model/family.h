// The model families polar reads and writes: one FamilyInfo entry per family holds its name
// (ModelConfig::architecture, Hugging Face "model_type"), the Hugging Face classes it imports,
// how its config.json states what is family-specific, and the export format that writes it.
// The tensor names of each family are its layout table in io/hf_layouts.h. Adding a family is
// one entry in family.cpp plus one layout row there (see docs/model_families.md).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace polar {

struct ModelConfig;

enum class ModelFamily { Llama, Qwen2, Qwen3, InternLM2 };

// Which shapes a family writes under its export format.
enum class ExportBias { Without, With, Either };  // q/k/v biases: none, required, any

// Custom modeling code a format names in auto_map (copied by `polar export --code-from`).
struct RemoteCode {
  const char* modeling_file;       // marks a directory that holds the code
  std::vector<const char*> files;  // copied into the export when found
  const char* tokenizer_file;      // when copied, tokenizer_config.json names the class below
  const char* tokenizer_class;     // e.g. "InternLM2Tokenizer"
  const char* tokenizer_auto_map;  // e.g. "tokenization_internlm2.InternLM2Tokenizer"
};

struct FamilyInfo {
  ModelFamily family;
  const char* name;             // ModelConfig::architecture and config.json "model_type"
  const char* display_name;     // for messages: "Llama"
  const char* causal_lm_class;  // imported without a reward head (a fresh one is initialised)
  const char* reward_class;     // imported with its reward head, and written by export
  // config.json -> ModelConfig: transformers' default of max_position_embeddings, and the
  // boolean key that switches q/k/v biases (and an output bias, which must be zero) on;
  // nullptr: the family always has q/k/v biases and no output bias.
  int64_t default_max_position;
  const char* bias_key;
  // transformers' default head_dim when config.json has none; 0: hidden_size / heads.
  int64_t default_head_dim;
  // Numerics beyond the shared decoder: per-head RMSNorm of q and k before RoPE (Qwen3's
  // self_attn.q_norm / k_norm).
  bool qk_norm;
  // ModelConfig -> config.json: the format that writes this family (also what --format auto
  // picks for it), the shapes it writes, and the keys beyond those every family shares.
  const char* export_format;
  ExportBias export_bias;
  void (*write_config_keys)(const ModelConfig& shape, nlohmann::json& config);
  const RemoteCode* remote_code;  // nullptr: transformers loads the export without custom code
};

// Every family, in a fixed order.
const std::vector<FamilyInfo>& model_families();

const FamilyInfo& family_info(ModelFamily family);

// By name ("llama"); throws polar::Error listing the known names.
const FamilyInfo& family_by_name(const std::string& name);

// A Hugging Face architecture class and whether it carries a reward head.
struct HfClass {
  const FamilyInfo* family;
  bool reward_head;
};

// By class name ("LlamaForCausalLM"); throws polar::Error listing the classes polar imports.
HfClass family_by_hf_class(const std::string& cls);

// The export format names, each once, in family order: {"hf-llama", "hf-internlm2"}.
std::vector<std::string> export_formats();

// The family `format` writes `shape` as: the first family of that format whose ExportBias admits
// the shape; "auto" is the format of the shape's own family. Throws naming the known formats.
const FamilyInfo& export_family(const std::string& format, const ModelConfig& shape);

}  // namespace polar
