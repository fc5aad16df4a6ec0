// Hugging Face interoperability: import of LlamaFor*/Qwen2For*/InternLM2For* directories and
// export to a directory that transformers/vLLM load.
//   import: config.json -> ModelConfig (parse_hf_config), safetensors weights through the layout
//           tables of io/hf_layouts.h, tokenizer.model + special ids from the directory.
//   export: hf-llama (LlamaForSequenceClassification, or Qwen2ForSequenceClassification when the
//           model has q/k/v biases; no custom code) or hf-internlm2 (InternLM2ForRewardModel,
//           packed wqkv, v_head; remote code named in auto_map, as POLAR's released models).
// The families, their classes, config keys and export formats are the entries of model/family.h.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "polar/model/config.h"

namespace polar {

struct LoadedModel;

// What a Hugging Face config.json says about the model, besides its shape.
struct HfModelInfo {
  std::string architecture_class;  // e.g. "LlamaForCausalLM"
  bool has_reward_head = false;    // *ForSequenceClassification / *ForRewardModel
  ModelConfig shape;               // shape.architecture: a model/family.h name
  bool has_o_bias = false;         // Llama attention_bias / InternLM2 bias: o bias must be all zero
  int64_t bos_token_id = -1, eos_token_id = -1, pad_token_id = -1,
          reward_token_id = -1;    // -1: absent
  std::vector<std::string> notes;  // what was read loosely (e.g. dynamic RoPE), for the import log
};

// True when `dir` holds a Hugging Face model (config.json with "architectures").
bool is_hf_directory(const std::string& dir);

// Maps a config.json object (transformers 4.x keys rope_theta/rope_scaling and 5.x
// rope_parameters) to a shape. Refuses what the model cannot reproduce, naming the key: an
// architecture other than Llama/Qwen2/Qwen3/InternLM2, activations other than silu, rope types
// other than default/linear/llama3 (dynamic NTK is read as plain RoPE: it is identical up to
// max_position_embeddings), partial rotary, MLP biases, sliding windows.
HfModelInfo parse_hf_config(const nlohmann::json& config, const std::string& where);

struct HfImportOptions {
  std::string tokenizer_dir;  // used instead of the directory's tokenizer.model when set
  uint64_t head_seed = 0;     // seed of the fresh reward head of a *ForCausalLM import
  // A language model to sample from (a policy): its own tokenizer, POLAR's <|reward|> and reward
  // tokens are not required (ids -1 when absent).
  bool language_model = false;
};

// Imports weights, shape and tokenizer; a CausalLM gets a freshly initialised reward head.
// LoadedModel::config is {"model": shape, "import": {source, architecture, reward_head, ...}}.
LoadedModel import_hf(const std::string& dir, const torch::Device& device);
LoadedModel import_hf(const std::string& dir, const torch::Device& device,
                      const HfImportOptions& options);

// `embed` (V, H) with rows - V rows appended, each the mean of the V rows (computed in fp32):
// the embedding (or LM head) of template tokens a tokenizer.json gained at import.
torch::Tensor grown_embedding(const torch::Tensor& embed, int64_t rows);

struct HfExportOptions {
  std::string format =
      "auto";  // auto | hf-llama | hf-internlm2 (auto: internlm2 for InternLM2 models)
  std::string dtype = "bf16";  // bf16 | fp32 (fp32 reproduces `polar score` exactly)
  uint64_t max_shard_bytes = 5ull << 30;
  std::string code_from;   // hf-internlm2: copy *_internlm2*.py from this directory
  bool overwrite = false;  // replace an existing non-empty output directory
};

// Writes `out_dir` atomically: config.json, model*.safetensors (+ index), tokenizer.model,
// polar_tokenizer.json, tokenizer_config.json, special_tokens_map.json.
void export_hf(const LoadedModel& model, const std::string& out_dir,
               const HfExportOptions& options);

// The config.json written for `format` (auto | hf-llama | hf-internlm2: see export_family in
// model/family.h) and dtype (bf16 | fp32).
nlohmann::json hf_export_config(const ModelConfig& shape, const std::string& format,
                                const std::string& dtype, int64_t bos, int64_t eos, int64_t pad,
                                int64_t reward);

}  // namespace polar
