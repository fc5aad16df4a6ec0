// Hugging Face export: a directory that transformers loads with no custom code
// (Llama/Qwen2ForSequenceClassification) or in POLAR's InternLM2 reward layout (remote code).
// Sequence-classification models read the score at the last non-pad token; a POLAR sequence ends
// with the reward token, so pad_token_id is chosen to differ from it.
#include "polar/checkpoint/hf.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <unistd.h>

#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/io/hf_layouts.h"
#include "polar/io/safetensors.h"
#include "polar/checkpoint/checkpoint.h"

namespace polar::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The remote code POLAR's InternLM2 checkpoints name in auto_map; copied by --code-from.
const char* const kInternLM2Code[] = {"configuration_internlm2.py", "modeling_internlm2.py", "tokenization_internlm2.py",
                                      "tokenization_internlm2_fast.py"};

json rope_scaling_json(const ModelConfig& s) {
  if (s.rope_scaling == 1.0) return nullptr;
  return json{{"type", "linear"}, {"rope_type", "linear"}, {"factor", s.rope_scaling}};
}

std::string resolve_format(const std::string& format, const ModelConfig& shape) {
  if (format == "auto") return shape.architecture == "internlm2" ? "hf-internlm2" : "hf-llama";
  POLAR_CHECK(format == "hf-llama" || format == "hf-internlm2", "export --format: expected auto, hf-llama or hf-internlm2, got \"",
              format, "\"");
  return format;
}

// A special id that is never the reward token (the score is read at the last non-pad token).
int64_t pad_id(const SpecialTokens& s) {
  for (int64_t id : {static_cast<int64_t>(s.pad), static_cast<int64_t>(s.eos), static_cast<int64_t>(s.bos)}) {
    if (id >= 0 && id != s.reward) return id;
  }
  throw Error("export: no pad token id that differs from the reward token");
}

json tokenizer_config(const Tokenizer& tok, int64_t pad, int64_t max_length, bool internlm2_code) {
  const SpecialTokens& s = tok.special();
  auto piece = [&](int64_t id) { return id >= 0 ? json(tok.id_to_piece(static_cast<int32_t>(id))) : json(nullptr); };
  // sentencepiece models trained with add_dummy_prefix start a text with "\u2581"; HF must do the
  // same, and (legacy) for every run between special tokens, as sentencepiece and polar do.
  const auto a = tok.encode("a");
  const bool prefix_space = !a.empty() && tok.id_to_piece(a[0]).rfind("\xe2\x96\x81", 0) == 0;
  // Every piece polar splits out of text (Tokenizer::special_pieces), so HF splits the same.
  json added = json::object();
  for (const auto& [content, id] : tok.special_pieces()) {
    added[std::to_string(id)] = {{"content", content}, {"lstrip", false},      {"normalized", false},
                                 {"rstrip", false},    {"single_word", false}, {"special", true}};
  }
  const int32_t unk = tok.piece_to_id("<unk>");
  json j = {{"tokenizer_class", internlm2_code ? "InternLM2Tokenizer" : "LlamaTokenizer"},
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
  if (internlm2_code) j["auto_map"] = {{"AutoTokenizer", {"tokenization_internlm2.InternLM2Tokenizer", nullptr}}};
  return j;
}

json special_tokens_map(const json& tok_config) {
  json j = json::object();
  for (const char* k : {"bos_token", "eos_token", "unk_token", "pad_token", "additional_special_tokens"}) {
    if (!tok_config[k].is_null()) j[k] = tok_config[k];
  }
  return j;
}

// --code-from, else the HF directory the checkpoint was imported or initialised from.
std::string find_code_dir(const LoadedModel& lm, const std::string& code_from) {
  std::vector<std::string> candidates;
  if (!code_from.empty()) {
    POLAR_CHECK(fs::is_regular_file(fs::path(code_from) / "modeling_internlm2.py"), "export --code-from ", code_from,
                ": no modeling_internlm2.py there");
    return code_from;
  }
  const json& c = lm.config;
  if (c.contains("import") && c["import"].is_object() && c["import"].value("source", json()).is_string()) {
    candidates.push_back(c["import"]["source"].get<std::string>());
  }
  if (c.contains("model") && c["model"].is_object() && c["model"].value("init_from", json()).is_string()) {
    candidates.push_back(c["model"]["init_from"].get<std::string>());
  }
  for (const auto& dir : candidates) {
    if (!dir.empty() && fs::is_regular_file(fs::path(dir) / "modeling_internlm2.py")) return dir;
  }
  return "";
}

}  // namespace

json hf_export_config(const ModelConfig& s, const std::string& format, const std::string& dtype, int64_t bos,
                      int64_t eos, int64_t pad, int64_t reward) {
  POLAR_CHECK(dtype == "bf16" || dtype == "fp32", "export --dtype: expected bf16 or fp32, got \"", dtype, "\"");
  const char* torch_dtype = dtype == "bf16" ? "bfloat16" : "float32";
  auto id = [](int64_t v) { return v >= 0 ? json(v) : json(nullptr); };
  if (format == "hf-internlm2") {
    // InternLM2Config accepts rope_scaling {"type", "factor"} with factor > 1 only.
    POLAR_CHECK(s.rope_scaling == 1.0 || s.rope_scaling > 1.0, "export hf-internlm2: linear RoPE factor ", s.rope_scaling,
                " < 1 cannot be written in InternLM2's config; use --format hf-llama");
    json scaling = s.rope_scaling == 1.0 ? json(nullptr) : json{{"type", "linear"}, {"factor", s.rope_scaling}};
    return json{{"architectures", {"InternLM2ForRewardModel"}},
                {"auto_map",
                 {{"AutoConfig", "configuration_internlm2.InternLM2Config"},
                  {"AutoModel", "modeling_internlm2.InternLM2ForRewardModel"}}},
                {"model_type", "internlm2"},
                {"attn_implementation", "eager"},
                {"bias", s.qkv_bias},
                {"hidden_act", "silu"},
                {"hidden_size", s.hidden_size},
                {"intermediate_size", s.intermediate_size},
                {"num_hidden_layers", s.num_layers},
                {"num_attention_heads", s.num_heads},
                {"num_key_value_heads", s.num_kv_heads},
                {"max_position_embeddings", s.max_position},
                {"rms_norm_eps", s.rms_eps},
                {"rope_theta", s.rope_theta},
                {"rope_scaling", scaling},
                {"tie_word_embeddings", s.tie_embeddings},
                {"vocab_size", s.vocab_size},
                {"initializer_range", s.init_std},
                {"bos_token_id", id(bos)},
                {"eos_token_id", id(eos)},
                {"pad_token_id", id(pad)},
                {"reward_token_id", id(reward)},
                {"torch_dtype", torch_dtype},
                {"use_cache", false}};
  }
  POLAR_CHECK(format == "hf-llama", "export: unknown format \"", format, "\"");
  // Llama's attention_bias would add an o_proj bias too; Qwen2 has exactly q/k/v biases.
  const bool qwen2 = s.qkv_bias;
  json rope_parameters = {{"rope_type", s.rope_scaling == 1.0 ? "default" : "linear"}, {"rope_theta", s.rope_theta}};
  if (s.rope_scaling != 1.0) rope_parameters["factor"] = s.rope_scaling;
  json c = {{"architectures", {qwen2 ? "Qwen2ForSequenceClassification" : "LlamaForSequenceClassification"}},
            {"model_type", qwen2 ? "qwen2" : "llama"},
            {"hidden_act", "silu"},
            {"hidden_size", s.hidden_size},
            {"intermediate_size", s.intermediate_size},
            {"num_hidden_layers", s.num_layers},
            {"num_attention_heads", s.num_heads},
            {"num_key_value_heads", s.num_kv_heads},
            {"head_dim", s.head_dim()},
            {"max_position_embeddings", s.max_position},
            {"rms_norm_eps", s.rms_eps},
            // Both spellings: transformers 4.x reads rope_theta/rope_scaling, 5.x rope_parameters.
            {"rope_theta", s.rope_theta},
            {"rope_scaling", rope_scaling_json(s)},
            {"rope_parameters", rope_parameters},
            {"tie_word_embeddings", s.tie_embeddings},
            {"vocab_size", s.vocab_size},
            {"initializer_range", s.init_std},
            {"id2label", {{"0", "LABEL_0"}}},
            {"label2id", {{"LABEL_0", 0}}},
            {"bos_token_id", id(bos)},
            {"eos_token_id", id(eos)},
            {"pad_token_id", id(pad)},
            {"reward_token_id", id(reward)},
            {"torch_dtype", torch_dtype},
            {"use_cache", false}};
  if (qwen2) {
    c["use_sliding_window"] = false;
    c["max_window_layers"] = s.num_layers;
  } else {
    c["attention_bias"] = false;
    c["mlp_bias"] = false;
  }
  return c;
}

void export_hf(const LoadedModel& lm, const std::string& out_dir, const HfExportOptions& options) {
  POLAR_CHECK(lm.model, "export: no model loaded");
  const ModelConfig& shape = lm.model->config();
  const std::string format = resolve_format(options.format, shape);
  POLAR_CHECK(options.dtype == "bf16" || options.dtype == "fp32", "export --dtype: expected bf16 or fp32, got \"",
              options.dtype, "\"");
  const fs::path out(out_dir);
  if (fs::exists(out)) {
    POLAR_CHECK(fs::is_directory(out), out_dir, ": exists and is not a directory");
    POLAR_CHECK(options.overwrite || fs::is_empty(out), out_dir, ": exists and is not empty (pass --overwrite to replace it)");
  }

  const SpecialTokens& special = lm.tokenizer.special();
  const int64_t pad = pad_id(special);
  const json config = hf_export_config(shape, format, options.dtype, special.bos, special.eos, pad, special.reward);
  const bool internlm2 = format == "hf-internlm2";
  const std::string code_dir = internlm2 ? find_code_dir(lm, options.code_from) : "";
  const bool tokenizer_code = !code_dir.empty() && fs::exists(fs::path(code_dir) / "tokenization_internlm2.py");

  std::map<std::string, torch::Tensor> params;
  for (const auto& p : lm.model->named_parameters()) params[p.key()] = p.value().detach();
  const auto layout = internlm2 ? hf::Layout::InternLM2 : hf::Layout::Llama;
  auto tensors = hf::polar_to_hf(layout, shape, params);
  const auto dtype = options.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
  for (auto& [name, t] : tensors) t = t.to(torch::kCPU).to(dtype).contiguous();

  fs::path tmp = out;
  tmp += ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    save_safetensors_sharded(tmp.string(), tensors, options.max_shard_bytes, {{"format", "pt"}});
    tensors.clear();
    write_json_file_atomic((tmp / "config.json").string(), config);
    lm.tokenizer.save(tmp.string());  // tokenizer.model + polar_tokenizer.json (exact ids on re-import)
    const json tok_config = tokenizer_config(lm.tokenizer, pad, shape.max_position, tokenizer_code);
    write_json_file_atomic((tmp / "tokenizer_config.json").string(), tok_config);
    write_json_file_atomic((tmp / "special_tokens_map.json").string(), special_tokens_map(tok_config));
    if (!code_dir.empty()) {
      for (const char* f : kInternLM2Code) {
        const fs::path src = fs::path(code_dir) / f;
        if (fs::is_regular_file(src)) fs::copy_file(src, tmp / f, fs::copy_options::overwrite_existing);
      }
    }
    fs::path old = out;
    old += ".old-" + std::to_string(::getpid());
    if (fs::exists(out)) fs::rename(out, old);
    fs::rename(tmp, out);
    fs::remove_all(old);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }

  spdlog::info("exported {} ({}, {}) to {}", config["architectures"][0].get<std::string>(), format, options.dtype, out_dir);
  spdlog::info("the score is read at the last non-pad token: POLAR sequences end with the reward token (id {}), "
               "pad_token_id is {}",
               special.reward, pad);
  if (internlm2) {
    if (code_dir.empty()) {
      spdlog::warn("{} names remote code in auto_map: copy configuration_internlm2.py and modeling_internlm2.py "
                   "(and tokenization_internlm2*.py) from the POLAR model you started from into it, or pass --code-from",
                   out_dir);
    } else {
      spdlog::info("copied the InternLM2 remote code from {}", code_dir);
    }
  }
}

}  // namespace polar::io
