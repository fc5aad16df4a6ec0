// Hugging Face export: a directory that transformers loads with no custom code
// (Llama/Qwen2/Qwen3ForSequenceClassification) or in POLAR's InternLM2 reward layout (remote code).
// What differs by family (class, config keys, remote code) comes from its model/family.h entry.
// Sequence-classification models read the score at the last non-pad token; a POLAR sequence ends
// with the reward token, so pad_token_id is chosen to differ from it.
#include "polar/checkpoint/hf.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>

#include "polar/checkpoint/checkpoint.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/common/staged_dir.h"
#include "polar/io/hf_layouts.h"
#include "polar/io/safetensors.h"
#include "polar/model/family.h"

namespace polar {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A special id that is never the reward token (the score is read at the last non-pad token).
int64_t pad_id(const SpecialTokens& s) {
  for (int64_t id :
       {static_cast<int64_t>(s.pad), static_cast<int64_t>(s.eos), static_cast<int64_t>(s.bos)}) {
    if (id >= 0 && id != s.reward) return id;
  }
  throw Error("export: no pad token id that differs from the reward token");
}

// `code`: the remote code whose tokenizer was copied into the export, else nullptr.
json tokenizer_config(const Tokenizer& tok, int64_t pad, int64_t max_length,
                      const RemoteCode* code) {
  const SpecialTokens& s = tok.special();
  auto piece = [&](int64_t id) {
    return id >= 0 ? json(tok.id_to_piece(static_cast<int32_t>(id))) : json(nullptr);
  };
  if (std::string(tok.backend_name()) == "tokenizer.json") {
    // The exported tokenizer.json holds the whole pipeline (added tokens with their flags,
    // post_processor): the fast tokenizer reads it as it is, and this file only names the
    // special tokens.
    return {{"tokenizer_class", "PreTrainedTokenizerFast"},
            {"bos_token", piece(s.bos)},
            {"eos_token", piece(s.eos)},
            {"pad_token", piece(pad)},
            {"additional_special_tokens", {piece(s.reward_sep), piece(s.reward)}},
            {"clean_up_tokenization_spaces", false},
            {"padding_side", "right"},
            {"model_max_length", max_length}};
  }
  // sentencepiece models trained with add_dummy_prefix start a text with "\u2581"; HF must do the
  // same, and (legacy) for every run between special tokens, as sentencepiece and polar do.
  const auto a = tok.encode("a");
  const bool prefix_space = !a.empty() && tok.id_to_piece(a[0]).rfind("\xe2\x96\x81", 0) == 0;
  // Every piece polar splits out of text (Tokenizer::special_pieces), so HF splits the same.
  json added = json::object();
  for (const auto& [content, id] : tok.special_pieces()) {
    added[std::to_string(id)] = {{"content", content},   {"lstrip", false},
                                 {"normalized", false},  {"rstrip", false},
                                 {"single_word", false}, {"special", true}};
  }
  const int32_t unk = tok.piece_to_id("<unk>");
  json j = {{"tokenizer_class", code ? code->tokenizer_class : "LlamaTokenizer"},
            {"bos_token", piece(s.bos)},
            {"eos_token", piece(s.eos)},
            {"unk_token", piece(unk)},
            {"pad_token", piece(pad)},
            {"additional_special_tokens", {piece(s.reward_sep), piece(s.reward)}},
            {"added_tokens_decoder", added},
            {"add_bos_token", true},
            {"add_eos_token", false},
            {"legacy", true},
            {"add_prefix_space", prefix_space},
            {"clean_up_tokenization_spaces", false},
            {"padding_side", "right"},
            {"model_max_length", max_length}};
  if (code) j["auto_map"] = {{"AutoTokenizer", {code->tokenizer_auto_map, nullptr}}};
  return j;
}

json special_tokens_map(const json& tok_config) {
  json j = json::object();
  for (const char* k :
       {"bos_token", "eos_token", "unk_token", "pad_token", "additional_special_tokens"}) {
    if (tok_config.contains(k) && !tok_config[k].is_null()) j[k] = tok_config[k];
  }
  return j;
}

// --code-from, else the HF directory the checkpoint was imported or initialised from.
std::string find_code_dir(const LoadedModel& lm, const RemoteCode& code,
                          const std::string& code_from) {
  std::vector<std::string> candidates;
  if (!code_from.empty()) {
    POLAR_CHECK(fs::is_regular_file(fs::path(code_from) / code.modeling_file),
                "export --code-from ", code_from, ": no ", code.modeling_file, " there");
    return code_from;
  }
  const json& c = lm.config;
  if (c.contains("import") && c["import"].is_object() &&
      c["import"].value("source", json()).is_string()) {
    candidates.push_back(c["import"]["source"].get<std::string>());
  }
  if (c.contains("model") && c["model"].is_object() &&
      c["model"].value("init_from", json()).is_string()) {
    candidates.push_back(c["model"]["init_from"].get<std::string>());
  }
  for (const auto& dir : candidates) {
    if (!dir.empty() && fs::is_regular_file(fs::path(dir) / code.modeling_file)) return dir;
  }
  return "";
}

}  // namespace

json hf_export_config(const ModelConfig& s, const std::string& format, const std::string& dtype,
                      int64_t bos, int64_t eos, int64_t pad, int64_t reward) {
  POLAR_CHECK(dtype == "bf16" || dtype == "fp32", "export --dtype: expected bf16 or fp32, got \"",
              dtype, "\"");
  const FamilyInfo& family = export_family(format, s);
  auto id = [](int64_t v) { return v >= 0 ? json(v) : json(nullptr); };
  // The keys every family shares; the family's entry adds the rest.
  json c = {{"architectures", {family.reward_class}},
            {"model_type", family.name},
            {"hidden_act", "silu"},
            {"hidden_size", s.hidden_size},
            {"intermediate_size", s.intermediate_size},
            {"num_hidden_layers", s.num_layers},
            {"num_attention_heads", s.num_heads},
            {"num_key_value_heads", s.num_kv_heads},
            {"max_position_embeddings", s.max_position},
            {"rms_norm_eps", s.rms_eps},
            {"rope_theta", s.rope_theta},
            {"tie_word_embeddings", s.tie_embeddings},
            {"vocab_size", s.vocab_size},
            {"initializer_range", s.init_std},
            {"bos_token_id", id(bos)},
            {"eos_token_id", id(eos)},
            {"pad_token_id", id(pad)},
            {"reward_token_id", id(reward)},
            {"torch_dtype", dtype == "bf16" ? "bfloat16" : "float32"},
            {"use_cache", false}};
  family.write_config_keys(s, c);
  return c;
}

void export_hf(const LoadedModel& lm, const std::string& out_dir, const HfExportOptions& options) {
  POLAR_CHECK(lm.model, "export: no model loaded");
  const ModelConfig& shape = lm.model->config();
  const FamilyInfo& family = export_family(options.format, shape);
  const std::string format = family.export_format;
  POLAR_CHECK(options.dtype == "bf16" || options.dtype == "fp32",
              "export --dtype: expected bf16 or fp32, got \"", options.dtype, "\"");
  const fs::path out(out_dir);
  if (fs::exists(out)) {
    POLAR_CHECK(fs::is_directory(out), out_dir, ": exists and is not a directory");
    POLAR_CHECK(options.overwrite || fs::is_empty(out), out_dir,
                ": exists and is not empty (pass --overwrite to replace it)");
  }

  const SpecialTokens& special = lm.tokenizer.special();
  const int64_t pad = pad_id(special);
  const json config =
      hf_export_config(shape, format, options.dtype, special.bos, special.eos, pad, special.reward);
  const RemoteCode* code = family.remote_code;
  const std::string code_dir = code ? find_code_dir(lm, *code, options.code_from) : "";
  const bool tokenizer_code =
      !code_dir.empty() && fs::exists(fs::path(code_dir) / code->tokenizer_file);

  std::map<std::string, torch::Tensor> params;
  for (const auto& p : lm.model->named_parameters()) params[p.key()] = p.value().detach();
  auto tensors = io::hf::polar_to_hf(family.family, shape, params);
  const auto dtype = options.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
  for (auto& [name, t] : tensors) t = t.to(torch::kCPU).to(dtype).contiguous();

  StagedDir staged(out.string());  // swapped into place by commit(); removed on an error
  const fs::path tmp(staged.path());
  io::save_safetensors_sharded(tmp.string(), tensors, options.max_shard_bytes, {{"format", "pt"}});
  tensors.clear();
  write_json_file_atomic((tmp / "config.json").string(), config);
  lm.tokenizer.save(
      tmp.string());  // tokenizer.model + polar_tokenizer.json (exact ids on re-import)
  const json tok_config =
      tokenizer_config(lm.tokenizer, pad, shape.max_position, tokenizer_code ? code : nullptr);
  write_json_file_atomic((tmp / "tokenizer_config.json").string(), tok_config);
  write_json_file_atomic((tmp / "special_tokens_map.json").string(),
                         special_tokens_map(tok_config));
  if (!code_dir.empty()) {
    for (const char* f : code->files) {
      const fs::path src = fs::path(code_dir) / f;
      if (fs::is_regular_file(src))
        fs::copy_file(src, tmp / f, fs::copy_options::overwrite_existing);
    }
  }
  staged.commit();

  spdlog::info("exported {} ({}, {}) to {}", config["architectures"][0].get<std::string>(), format,
               options.dtype, out_dir);
  spdlog::info(
      "the score is read at the last non-pad token: POLAR sequences end with the reward token (id "
      "{}), "
      "pad_token_id is {}",
      special.reward, pad);
  if (code) {
    if (code_dir.empty()) {
      std::string files;
      for (const char* f : code->files) files += (files.empty() ? "" : ", ") + std::string(f);
      spdlog::warn(
          "{} names remote code in auto_map: copy {} from the POLAR model you started from into "
          "it, or "
          "pass --code-from",
          out_dir, files);
    } else {
      spdlog::info("copied the {} remote code from {}", family.display_name, code_dir);
    }
  }
}

}  // namespace polar
