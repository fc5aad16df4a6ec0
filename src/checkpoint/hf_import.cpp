// Hugging Face import: config.json -> ModelConfig, safetensors -> RewardModel through the layout
// tables, and the directory's sentencepiece tokenizer with POLAR's special ids.
#include "polar/checkpoint/hf.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <unistd.h>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "polar/checkpoint/checkpoint.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/io/hf_layouts.h"
#include "polar/io/safetensors.h"
#include "polar/model/family.h"

namespace polar {

namespace fs = std::filesystem;
using nlohmann::json;
using torch::Tensor;

torch::Tensor grown_embedding(const torch::Tensor& embed, int64_t rows) {
  POLAR_CHECK(embed.dim() == 2 && rows >= embed.size(0), "grown_embedding: cannot grow ",
              embed.sizes(), " to ", rows, " rows");
  if (rows == embed.size(0)) return embed;
  const Tensor mean = embed.to(torch::kFloat).mean(0, /*keepdim=*/true).to(embed.scalar_type());
  return torch::cat({embed, mean.expand({rows - embed.size(0), embed.size(1)})}, 0);
}

namespace {

// A key of the config: nullptr when absent or null (transformers writes null for "unset").
const json* find_key(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

int64_t get_int(const json& j, const char* key, int64_t fallback, const std::string& where) {
  const json* v = find_key(j, key);
  if (!v) return fallback;
  POLAR_CHECK(v->is_number_integer(), where, ": \"", key, "\": expected an integer, got ",
              v->dump());
  return v->get<int64_t>();
}

int64_t require_int(const json& j, const char* key, const std::string& where) {
  POLAR_CHECK(find_key(j, key), where, ": \"", key, "\" is missing");
  return get_int(j, key, 0, where);
}

double get_number(const json& j, const char* key, double fallback, const std::string& where) {
  const json* v = find_key(j, key);
  if (!v) return fallback;
  POLAR_CHECK(v->is_number(), where, ": \"", key, "\": expected a number, got ", v->dump());
  return v->get<double>();
}

bool get_bool(const json& j, const char* key, bool fallback, const std::string& where) {
  const json* v = find_key(j, key);
  if (!v) return fallback;
  POLAR_CHECK(v->is_boolean(), where, ": \"", key, "\": expected true or false, got ", v->dump());
  return v->get<bool>();
}

std::string get_string(const json& j, const char* key, const std::string& fallback,
                       const std::string& where) {
  const json* v = find_key(j, key);
  if (!v) return fallback;
  POLAR_CHECK(v->is_string(), where, ": \"", key, "\": expected a string, got ", v->dump());
  return v->get<std::string>();
}

// Token ids may be a list (e.g. several eos ids); the first one is the model's.
int64_t get_token_id(const json& j, const char* key, const std::string& where) {
  const json* v = find_key(j, key);
  if (!v) return -1;
  if (v->is_array()) {
    if (v->empty()) return -1;
    v = &(*v)[0];
  }
  POLAR_CHECK(v->is_number_integer(), where, ": \"", key, "\": expected a token id, got ",
              v->dump());
  return v->get<int64_t>();
}

// RoPE from transformers 5.x "rope_parameters" or 4.x "rope_theta" + "rope_scaling".
void read_rope(const json& config, const std::string& where, HfModelInfo& info) {
  ModelConfig& shape = info.shape;
  const json* params = find_key(config, "rope_parameters");
  const char* scaling_key = params ? "rope_parameters" : "rope_scaling";
  const json* scaling = params ? params : find_key(config, "rope_scaling");
  shape.rope_theta = get_number(config, "rope_theta", shape.rope_theta, where);
  shape.rope_scaling = 1.0;
  if (!scaling) return;
  const std::string key_where = where + ": \"" + scaling_key + "\"";
  POLAR_CHECK(scaling->is_object(), key_where, ": expected an object, got ", scaling->dump());
  shape.rope_theta = get_number(*scaling, "rope_theta", shape.rope_theta, key_where);
  std::string type = get_string(*scaling, "rope_type", "", key_where);
  if (type.empty()) type = get_string(*scaling, "type", "default", key_where);
  if (type == "default") return;
  const double factor = get_number(*scaling, "factor", 1.0, key_where);
  POLAR_CHECK(std::isfinite(factor) && factor > 0, key_where,
              ".factor: expected a number > 0, got ", factor);
  if (type == "linear") {
    shape.rope_scaling = factor;
  } else if (type == "llama3") {
    // transformers requires every key (no defaults): so does polar.
    auto required = [&](const char* key) {
      POLAR_CHECK(find_key(*scaling, key), key_where, ".", key, " is missing (rope_type llama3)");
      return get_number(*scaling, key, 0.0, key_where);
    };
    shape.rope_type = RopeType::Llama3;
    shape.rope_scaling = factor;
    shape.rope_low_freq_factor = required("low_freq_factor");
    shape.rope_high_freq_factor = required("high_freq_factor");
    POLAR_CHECK(find_key(*scaling, "original_max_position_embeddings"), key_where,
                ".original_max_position_embeddings is missing (rope_type llama3)");
    shape.rope_original_max_position =
        get_int(*scaling, "original_max_position_embeddings", 0, key_where);
  } else if (type == "dynamic") {
    // Dynamic NTK only changes the base for sequences longer than max_position_embeddings
    // (transformers and InternLM2's code alike), so below that it is plain RoPE.
    info.notes.push_back(
        fmt::format("{}: type \"dynamic\" (factor {}) is read as plain RoPE, which it equals for "
                    "sequences of up to "
                    "max_position_embeddings = {} tokens; longer sequences are not supported. "
                    "Exports write no rope scaling.",
                    scaling_key, factor, shape.max_position));
  } else {
    throw Error(key_where + ": rope type \"" + type +
                "\" is not supported; polar implements default, linear and llama3 RoPE scaling "
                "(dynamic is read as default)");
  }
}

// q/k/v biases: the family's switch (which also adds an output bias), or always on.
void read_bias(const json& config, const FamilyInfo& family, const std::string& where,
               HfModelInfo& info) {
  if (family.bias_key == nullptr) {
    info.shape.qkv_bias = true;
    return;
  }
  info.shape.qkv_bias = info.has_o_bias = get_bool(config, family.bias_key, false, where);
}

// Sliding-window layers (Qwen2's use_sliding_window, transformers 5.x layer_types) are refused.
void read_attention_window(const json& config, const std::string& where) {
  POLAR_CHECK(!get_bool(config, "use_sliding_window", false, where), where,
              ": \"use_sliding_window\" is true; polar has full attention only");
  if (const json* types = find_key(config, "layer_types")) {
    for (const auto& t : *types) {
      POLAR_CHECK(t == "full_attention", where, ": \"layer_types\" contains ", t.dump(),
                  "; polar has full attention only");
    }
  }
}

}  // namespace

bool is_hf_directory(const std::string& dir) {
  auto cfg = fs::path(dir) / "config.json";
  if (!fs::is_regular_file(cfg)) return false;
  auto j = read_json_file(cfg.string());
  return j.is_object() && j.contains("architectures");
}

HfModelInfo parse_hf_config(const json& config, const std::string& where) {
  POLAR_CHECK(config.is_object(), where, ": expected a JSON object");
  const json* archs = find_key(config, "architectures");
  POLAR_CHECK(archs && archs->is_array() && !archs->empty() && (*archs)[0].is_string(), where,
              ": \"architectures\": expected a non-empty list of class names");
  HfModelInfo info;
  info.architecture_class = (*archs)[0].get<std::string>();
  HfClass cls{};
  try {
    cls = family_by_hf_class(info.architecture_class);
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  const FamilyInfo& family = *cls.family;
  info.has_reward_head = cls.reward_head;
  const std::string model_type = get_string(config, "model_type", family.name, where);
  POLAR_CHECK(model_type == family.name, where, ": \"model_type\" is \"", model_type,
              "\" but the architecture ", info.architecture_class, " is a ", family.name, " model");

  ModelConfig& s = info.shape;
  s.architecture = family.name;
  s.vocab_size = require_int(config, "vocab_size", where);
  s.hidden_size = require_int(config, "hidden_size", where);
  s.num_layers = require_int(config, "num_hidden_layers", where);
  s.num_heads = require_int(config, "num_attention_heads", where);
  s.num_kv_heads = get_int(config, "num_key_value_heads", s.num_heads, where);
  s.intermediate_size = require_int(config, "intermediate_size", where);
  // Defaults are those of the transformers / InternLM2 config classes.
  s.max_position = get_int(config, "max_position_embeddings", family.default_max_position, where);
  s.rms_eps = get_number(config, "rms_norm_eps", 1e-6, where);
  s.tie_embeddings = get_bool(config, "tie_word_embeddings", false, where);
  s.init_std = get_number(config, "initializer_range", 0.02, where);
  read_rope(config, where, info);

  const std::string act = get_string(config, "hidden_act", "silu", where);
  POLAR_CHECK(act == "silu", where, ": \"hidden_act\" is \"", act,
              "\"; polar's MLP is SwiGLU with silu");
  POLAR_CHECK(s.num_heads > 0, where, ": \"num_attention_heads\" must be positive, got ",
              s.num_heads);
  // The family's default head_dim when the key is absent (Qwen3's config class has 128).
  const bool divisible = s.hidden_size % s.num_heads == 0;
  POLAR_CHECK(divisible || find_key(config, "head_dim") || family.default_head_dim > 0, where,
              ": \"hidden_size\" (", s.hidden_size,
              ") must be a multiple of \"num_attention_heads\" (", s.num_heads,
              ") when \"head_dim\" is not given");
  const int64_t head_dim = get_int(
      config, "head_dim",
      family.default_head_dim > 0 ? family.default_head_dim : s.hidden_size / s.num_heads, where);
  POLAR_CHECK(head_dim > 0, where, ": \"head_dim\" must be positive, got ", head_dim);
  // Stored only where it differs from hidden_size / num_heads, so equal shapes compare equal.
  s.head_dim = divisible && head_dim == s.hidden_size / s.num_heads ? 0 : head_dim;
  const double rotary = get_number(config, "partial_rotary_factor", 1.0, where);
  POLAR_CHECK(rotary == 1.0, where, ": \"partial_rotary_factor\" is ", rotary,
              "; polar rotates the whole head");
  POLAR_CHECK(!get_bool(config, "mlp_bias", false, where), where,
              ": \"mlp_bias\" is true; polar's MLP has no biases");

  read_bias(config, family, where, info);
  read_attention_window(config, where);

  if (info.has_reward_head) {
    int64_t labels = get_int(config, "num_labels", 1, where);
    if (const json* id2label = find_key(config, "id2label"))
      labels = static_cast<int64_t>(id2label->size());
    POLAR_CHECK(labels == 1, where, ": the classification head has ", labels,
                " labels (id2label); a reward model has 1");
  }
  info.bos_token_id = get_token_id(config, "bos_token_id", where);
  info.eos_token_id = get_token_id(config, "eos_token_id", where);
  info.pad_token_id = get_token_id(config, "pad_token_id", where);
  info.reward_token_id = get_token_id(config, "reward_token_id", where);
  try {
    s.validate();
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  return info;
}

namespace {

// A fresh directory under the system temp dir, removed with its contents by the destructor.
struct ScratchDir {
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "polar-hf-XXXXXX").string();
    POLAR_CHECK(::mkdtemp(tmpl.data()) != nullptr, "cannot create a temporary directory under ",
                fs::temp_directory_path().string());
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

// Special tokens named in tokenizer_config.json's added_tokens_decoder or tokenizer.json's
// added_tokens (some checkpoints rename sentencepiece pieces there): content -> id.
std::map<std::string, int32_t> added_tokens(const fs::path& dir) {
  std::map<std::string, int32_t> out;
  const fs::path cfg = dir / "tokenizer_config.json";
  if (fs::is_regular_file(cfg)) {
    const json j = read_json_file(cfg.string());
    if (const json* added = j.is_object() ? find_key(j, "added_tokens_decoder") : nullptr;
        added && added->is_object()) {
      for (const auto& [id, tok] : added->items()) {
        if (tok.is_object() && tok.contains("content") && tok["content"].is_string() &&
            id.find_first_not_of("0123456789") == std::string::npos && !id.empty() &&
            id.size() < 10) {
          out[tok["content"].get<std::string>()] = static_cast<int32_t>(std::stol(id));
        }
      }
    }
  }
  const fs::path tj = dir / "tokenizer.json";
  if (fs::is_regular_file(tj)) {
    const json j = read_json_file(tj.string());
    if (const json* added = j.is_object() ? find_key(j, "added_tokens") : nullptr;
        added && added->is_array()) {
      for (const auto& tok : *added) {
        if (tok.is_object() && tok.contains("content") && tok["content"].is_string() &&
            tok.contains("id") && tok["id"].is_number_integer()) {
          out.emplace(tok["content"].get<std::string>(), tok["id"].get<int32_t>());
        }
      }
    }
  }
  return out;
}

void copy_file_bytes(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  POLAR_CHECK(!ec, "cannot copy ", from.string(), " to ", to.string(), ": ", ec.message());
}

// The directory's tokenizer.json with POLAR's template tokens: its own, reserved special tokens
// renamed, spare embedding rows, or new tokens (the embedding then grows; see import_hf). The
// choice is logged and kept in the tokenizer (polar_tokenizer.json when saved). A language model
// (a sampled policy) keeps its own tokens: POLAR's are not needed to sample.
Tokenizer load_hf_json_tokenizer(const fs::path& dir, const HfModelInfo& info,
                                 bool language_model) {
  const Tokenizer base = Tokenizer::load_base(dir.string());
  if (language_model) return base;
  const TemplateTokenChoice choice = choose_polar_tokens(base, info.shape.vocab_size);
  spdlog::info("{}: {}", dir.string(), choice.description);
  return with_polar_tokens(base, choice);
}

// The directory's tokenizer with POLAR's special ids. A sentencepiece tokenizer.model:
// config.json's ids first (InternLM2 reward models name reward_token_id there), then piece names,
// then the added-token lists. Else a tokenizer.json (load_hf_json_tokenizer).
Tokenizer load_hf_tokenizer(const fs::path& dir, const HfModelInfo& info, std::string& source,
                            bool language_model) {
  const fs::path model = dir / "tokenizer.model";
  source = fs::absolute(dir).lexically_normal().string();
  if (fs::is_regular_file(dir / "polar_tokenizer.json"))
    return Tokenizer::load(dir.string());  // our own export
  if (!fs::is_regular_file(model) && fs::is_regular_file(dir / "tokenizer.json"))
    return load_hf_json_tokenizer(dir, info, language_model);
  POLAR_CHECK(fs::is_regular_file(model), dir.string(),
              ": no tokenizer.model (sentencepiece) or tokenizer.json (Hugging Face), which "
              "polar's tokenizer needs. Give one with --tokenizer DIR (e.g. from `polar tokenizer "
              "train`, with a polar_tokenizer.json naming the special ids), or copy it into the "
              "directory.");

  ScratchDir scratch;
  copy_file_bytes(model, scratch.path / "tokenizer.model");
  const fs::path ids_path = scratch.path / "polar_tokenizer.json";
  // Placeholder ids, only to open the model and look pieces up.
  write_json_file_atomic(
      ids_path.string(),
      json{{"format", "polar-tokenizer-v1"}, {"bos", 0}, {"reward_sep", 0}, {"reward", 1}});
  const Tokenizer probe = Tokenizer::load(scratch.path.string());
  const auto added = added_tokens(dir);
  auto lookup = [&](const std::string& piece) -> int64_t {
    const int32_t id = probe.piece_to_id(piece);
    if (id >= 0) return id;
    auto it = added.find(piece);
    return it == added.end() ? -1 : it->second;
  };
  auto first_of = [&](std::initializer_list<int64_t> ids) {
    for (int64_t id : ids) {
      if (id >= 0) return id;
    }
    return int64_t{-1};
  };
  int64_t reward =
      first_of({info.reward_token_id, lookup("<|reward_token|>"), lookup("[UNUSED_TOKEN_130]")});
  int64_t reward_sep = lookup("<|reward|>");
  if (language_model && (reward_sep < 0 || reward < 0)) reward_sep = reward = -1;
  POLAR_CHECK(reward_sep >= 0 || language_model, model.string(),
              ": no \"<|reward|>\" token (POLAR's separator between reference and "
              "candidate). Give a POLAR tokenizer with --tokenizer DIR");
  POLAR_CHECK(reward >= 0 || language_model, model.string(),
              ": no reward token (config.json \"reward_token_id\", \"<|reward_token|>\" "
              "or \"[UNUSED_TOKEN_130]\"). Give a POLAR tokenizer with --tokenizer DIR");
  const int64_t bos = first_of({info.bos_token_id, lookup("<s>")});
  const int64_t eos = first_of({info.eos_token_id, lookup("</s>")});
  int64_t pad = info.pad_token_id;
  if (pad < 0 || pad == reward) pad = first_of({lookup("<pad>"), lookup("<unk>"), eos});
  const int64_t vocab = probe.vocab_size();
  for (auto [name, id] : {std::pair<const char*, int64_t>{"reward token", reward},
                          {"<|reward|>", reward_sep},
                          {"bos", bos}}) {
    POLAR_CHECK(id < vocab, dir.string(), ": the ", name, " id ", id,
                " is outside tokenizer.model's ", vocab, " pieces");
  }
  write_json_file_atomic(ids_path.string(), json{{"format", "polar-tokenizer-v1"},
                                                 {"bos", bos},
                                                 {"eos", eos < vocab ? eos : -1},
                                                 {"pad", pad < vocab ? pad : -1},
                                                 {"reward_sep", reward_sep},
                                                 {"reward", reward}});
  return Tokenizer::load(scratch.path.string());  // holds the model bytes: the scratch dir may go
}

// --tokenizer must be the sentencepiece model the weights were trained with: the directory's own
// tokenizer.model, byte for byte (its special ids may differ: that is what --tokenizer is for).
void check_given_tokenizer(const fs::path& dir, const Tokenizer& given,
                           const std::string& given_path) {
  const fs::path own = dir / "tokenizer.model";
  if (!fs::is_regular_file(own)) {
    spdlog::warn(
        "{}: no tokenizer.model, so --tokenizer {} cannot be checked against the weights' "
        "tokenizer",
        dir.string(), given_path);
    return;
  }
  std::ifstream in(own, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  POLAR_CHECK(in.good() || in.eof(), own.string(), ": cannot read");
  POLAR_CHECK(bytes == given.model_bytes(), "import: --tokenizer ", given_path, " (fingerprint ",
              given.short_fingerprint(), ", ", given.vocab_size(),
              " pieces) is not the tokenizer the weights in ", dir.string(), " were trained with (",
              own.string(), " differs); its ids would mean other text to them. ",
              "Give --tokenizer a directory holding that tokenizer.model (with a "
              "polar_tokenizer.json naming the ",
              "special ids), or leave --tokenizer out");
}

}  // namespace

LoadedModel import_hf(const std::string& dir, const torch::Device& device) {
  return import_hf(dir, device, HfImportOptions{});
}

namespace {

// The imported model's tokenizer: options.tokenizer_dir (a POLAR tokenizer, or with
// language_model a policy's own tokenizer directory, read like the model directory's), else the
// model directory's. `source` says where it came from.
Tokenizer import_tokenizer(const fs::path& root, const HfModelInfo& info,
                           const HfImportOptions& options, std::string& source) {
  if (options.tokenizer_dir.empty())
    return load_hf_tokenizer(root, info, source, options.language_model);
  const bool plain_lm_dir = options.language_model && fs::is_directory(options.tokenizer_dir) &&
                            !fs::exists(fs::path(options.tokenizer_dir) / "polar_tokenizer.json");
  Tokenizer t = plain_lm_dir ? load_hf_tokenizer(options.tokenizer_dir, info, source,
                                                 /*language_model=*/true)
                             : Tokenizer::load(options.tokenizer_dir);
  source = options.tokenizer_dir;
  check_given_tokenizer(root, t, options.tokenizer_dir);
  return t;
}

// The directory's tensors in polar's names, the embedding grown from `file_rows` to `rows`
// (new template tokens); the LM head and rotary buffers are dropped, any other tensor left over
// is an error. `dropped_lm_head` says whether an LM head was there.
std::map<std::string, Tensor> read_hf_weights(const std::string& dir, const HfModelInfo& info,
                                              int64_t file_rows, int64_t rows,
                                              bool& dropped_lm_head) {
  const fs::path root(dir);
  const bool has_safetensors =
      fs::exists(root / "model.safetensors") || fs::exists(root / "model.safetensors.index.json");
  POLAR_CHECK(
      has_safetensors, dir, ": no model.safetensors or model.safetensors.index.json",
      fs::exists(root / "pytorch_model.bin") || fs::exists(root / "pytorch_model.bin.index.json")
          ? " (only pytorch_model.bin: re-save it with save_pretrained(dir, "
            "safe_serialization=True))"
          : "");
  const ModelFamily family = info.shape.family().family;
  const io::hf::LayoutTable& layout = io::hf::layout_table(family);
  auto tensors = io::load_safetensors_any(dir);
  ModelConfig file_shape = info.shape;
  file_shape.vocab_size = file_rows;
  auto params = io::hf::hf_to_polar(family, file_shape, tensors, info.has_reward_head, dir);
  if (rows > file_rows) {
    Tensor& embed = params.at("model.embed_tokens.weight");
    POLAR_CHECK(embed.dim() == 2 && embed.size(0) == file_rows, dir,
                ": model.embed_tokens.weight has shape ", embed.sizes(), ", the config implies (",
                file_rows, ", ", info.shape.hidden_size, ")");
    embed = grown_embedding(embed, rows);
  }
  dropped_lm_head = tensors.erase(layout.lm_head) > 0;
  for (auto it = tensors.begin(); it != tensors.end();) {  // buffers some old checkpoints carry
    const std::string& name = it->first;
    const bool inv_freq =
        name.size() >= 21 && name.compare(name.size() - 21, 21, "rotary_emb.inv_freq") == 0;
    it = inv_freq ? tensors.erase(it) : std::next(it);
  }
  if (!tensors.empty()) {
    std::string names;
    int shown = 0;
    for (const auto& [name, t] : tensors) {
      if (shown++ < 5) names += (names.empty() ? "\"" : ", \"") + name + "\"";
    }
    throw Error(dir + ": " + std::to_string(tensors.size()) + " unexpected tensor(s) for " +
                info.architecture_class + " (" + layout.name + " layout): " + names);
  }
  return params;
}

// Copies `params` into `model` (every parameter but a missing reward head must have one), freeing
// each source tensor as it goes.
void copy_hf_weights(RewardModel& model, std::map<std::string, Tensor>& params,
                     bool has_reward_head, const std::string& dir) {
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    if (p.key() == "score.weight" && !has_reward_head) continue;
    auto it = params.find(p.key());
    POLAR_CHECK(it != params.end(), dir, ": no tensor maps to parameter \"", p.key(), "\"");
    POLAR_CHECK(it->second.sizes() == p.value().sizes(), dir, ": tensor for \"", p.key(),
                "\" has shape ", it->second.sizes(), ", the config implies ", p.value().sizes());
    p.value().copy_(it->second.to(p.value().dtype()));
    params.erase(it);
  }
}

}  // namespace

LoadedModel import_hf(const std::string& dir, const torch::Device& device,
                      const HfImportOptions& options) {
  const fs::path root(dir);
  const fs::path cfg_path = root / "config.json";
  POLAR_CHECK(fs::is_regular_file(cfg_path), dir,
              ": not a Hugging Face model directory (no config.json)");
  HfModelInfo info = parse_hf_config(read_json_file(cfg_path.string()), cfg_path.string());
  const ModelConfig& shape = info.shape;
  for (const auto& note : info.notes) spdlog::warn("{}: {}", cfg_path.string(), note);

  LoadedModel out;
  std::string tokenizer_source;
  out.tokenizer = import_tokenizer(root, info, options, tokenizer_source);
  // New template tokens past the model's rows (TemplateTokenChoice "added") grow the embedding.
  const int64_t rows = std::max(shape.vocab_size, out.tokenizer.template_choice().embedding_rows);
  const int64_t file_rows = shape.vocab_size;
  POLAR_CHECK(out.tokenizer.vocab_size() <= rows, dir, ": the tokenizer has ",
              out.tokenizer.vocab_size(), " pieces but the model's vocab_size is ", rows);
  if (info.reward_token_id >= 0 && info.reward_token_id != out.tokenizer.special().reward) {
    spdlog::warn("{}: config.json names reward token {}, the tokenizer {} uses {}", dir,
                 info.reward_token_id, tokenizer_source, out.tokenizer.special().reward);
  }
  bool dropped_lm_head = false;
  auto params = read_hf_weights(dir, info, file_rows, rows, dropped_lm_head);
  info.shape.vocab_size = rows;

  out.shape = shape;
  out.model = RewardModel(shape);
  copy_hf_weights(out.model, params, info.has_reward_head, dir);
  std::string head = "imported";
  if (!info.has_reward_head) {
    out.model->reset_reward_head(options.head_seed);
    head = "initialised";
    spdlog::info(
        "{}: {} has no reward head: {}the reward head score.weight is freshly initialised (seed "
        "{}, std {})",
        dir, info.architecture_class, dropped_lm_head ? "its LM head is dropped and " : "",
        options.head_seed, shape.init_std);
  }
  out.model->to(device);
  out.config = json{{"model", shape.to_json()},
                    {"import",
                     {{"source", fs::absolute(root).lexically_normal().string()},
                      {"architecture", info.architecture_class},
                      {"reward_head", head},
                      {"tokenizer", tokenizer_source}}}};
  spdlog::info("imported {} from {}: {} layers, hidden {}, heads {}/{}, vocab {}, reward token {}",
               info.architecture_class, dir, shape.num_layers, shape.hidden_size, shape.num_heads,
               shape.num_kv_heads, shape.vocab_size, out.tokenizer.special().reward);
  return out;
}

}  // namespace polar
