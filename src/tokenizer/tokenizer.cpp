// Tokenizer: loading, encoding and saving a tokenizer backend with POLAR's special ids.
#include "polar/tokenizer/tokenizer.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "backend.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"

namespace polar {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kModelFile = "tokenizer.model";
constexpr const char* kJsonFile = "tokenizer.json";
constexpr const char* kSpecialsFile = "polar_tokenizer.json";
constexpr const char* kSpecialsFormat = "polar-tokenizer-v1";

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  POLAR_CHECK(in.good(), path, ": cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string sha256_hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  POLAR_CHECK(EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr) == 1,
              "sha256 failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

std::string compute_fingerprint(const std::string& model_bytes, const SpecialTokens& s) {
  return "sha256:" + sha256_hex(model_bytes + "\npolar-ids bos=" + std::to_string(s.bos) +
                                " reward_sep=" + std::to_string(s.reward_sep) +
                                " reward=" + std::to_string(s.reward));
}

}  // namespace

struct Tokenizer::Impl {
  std::shared_ptr<const TokenizerBackend> backend;
  std::vector<std::pair<std::string, int32_t>> specials;  // longest first
  std::array<bool, 256> special_first_byte{};             // a special piece starts with this byte
  TemplateTokenChoice choice;                             // how the template tokens were given

  void collect_specials(const SpecialTokens& s) {
    specials = backend->special_pieces(s);
    std::stable_sort(specials.begin(), specials.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    for (const auto& sp : specials)
      special_first_byte[static_cast<unsigned char>(sp.first[0])] = true;
  }
};

namespace {

// The backend a directory or file holds. A directory with both files (Llama 2 style Hugging
// Face directories) is read as sentencepiece, as before tokenizer.json support, unless
// polar_tokenizer.json names the backend.
std::shared_ptr<const TokenizerBackend> open_backend(const std::string& path,
                                                     const std::string& backend_name) {
  if (fs::is_directory(path)) {
    const fs::path sp = fs::path(path) / kModelFile, hf = fs::path(path) / kJsonFile;
    const bool use_json = backend_name == "tokenizer.json" ||
                          (backend_name.empty() && !fs::exists(sp) && fs::exists(hf));
    if (use_json) {
      POLAR_CHECK(fs::is_regular_file(hf), path, ": no ", kJsonFile);
      return load_hf_json_backend(hf.string());
    }
    POLAR_CHECK(fs::exists(sp), path, ": not a tokenizer directory (no ", kModelFile, " or ",
                kJsonFile, ")");
    POLAR_CHECK(fs::is_regular_file(sp), sp.string(), ": tokenizer model not found");
    return load_sentencepiece_backend(sp.string());
  }
  POLAR_CHECK(fs::is_regular_file(path), path, ": tokenizer model not found");
  if (fs::path(path).extension() == ".json") return load_hf_json_backend(path);
  return load_sentencepiece_backend(path);
}

std::string specials_path_of(const std::string& path) {
  if (fs::is_directory(path)) return (fs::path(path) / kSpecialsFile).string();
  // A model file given directly still takes the special ids saved beside it.
  return (fs::path(path).parent_path() / kSpecialsFile).string();
}

TemplateTokenChoice read_choice(const json& obj, const std::string& where) {
  json j = obj;
  const json list = j.contains("replaced") ? j["replaced"] : json::array();
  j.erase("replaced");
  ConfigReader r(j, where);
  TemplateTokenChoice c;
  r.get("how", c.how);
  r.get("description", c.description);
  int64_t sep = -1, reward = -1;
  r.get("reward_sep", sep);
  r.get("reward", reward);
  c.reward_sep = static_cast<int32_t>(sep);
  c.reward = static_cast<int32_t>(reward);
  r.get("vocab_size", c.vocab_size);
  r.get("embedding_rows", c.embedding_rows);
  r.finish();
  POLAR_CHECK(list.is_array(), r.path("replaced"), ": expected an array of [content, id]");
  for (const auto& e : list) {
    POLAR_CHECK(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_number_integer(),
                r.path("replaced"), ": expected an array of [content, id]");
    c.replaced.emplace_back(e[0].get<std::string>(), e[1].get<int32_t>());
  }
  return c;
}

json choice_json(const TemplateTokenChoice& c) {
  json replaced = json::array();
  for (const auto& [content, id] : c.replaced) replaced.push_back({content, id});
  return {{"how", c.how},
          {"description", c.description},
          {"reward_sep", c.reward_sep},
          {"reward", c.reward},
          {"replaced", replaced},
          {"vocab_size", c.vocab_size},
          {"embedding_rows", c.embedding_rows}};
}

// The backend polar_tokenizer.json names ("" when it names none).
std::string stored_backend_name(const json& stored, const std::string& specials_path) {
  std::string backend_name;
  if (stored.is_object() && stored.contains("backend") && stored["backend"].is_string())
    backend_name = stored["backend"].get<std::string>();
  POLAR_CHECK(
      backend_name.empty() || backend_name == "sentencepiece" || backend_name == "tokenizer.json",
      specials_path, ".backend: expected \"sentencepiece\" or \"tokenizer.json\", got \"",
      backend_name, "\"");
  return backend_name;
}

// What polar_tokenizer.json holds besides the backend name.
struct StoredSpecials {
  SpecialTokens ids;
  std::string fingerprint;  // absent in files written before fingerprints existed
  TemplateTokenChoice choice;
};

StoredSpecials read_stored_specials(const json& stored, const std::string& specials_path,
                                    int64_t vocab, bool require_template_tokens) {
  StoredSpecials out;
  ConfigReader r(stored, specials_path);
  std::string format = kSpecialsFormat, backend;
  r.get("format", format);
  POLAR_CHECK(format == kSpecialsFormat, specials_path, ".format: expected \"", kSpecialsFormat,
              "\", got \"", format, "\"");
  r.get("backend", backend);
  int64_t bos = -1, eos = -1, pad = -1, reward_sep = -1, reward = -1;
  r.get("fingerprint", out.fingerprint);
  r.get("bos", bos);
  r.get("eos", eos);
  r.get("pad", pad);
  r.get("reward_sep", reward_sep);
  r.get("reward", reward);
  if (const json* c = r.object("template_tokens"))
    out.choice = read_choice(*c, specials_path + ": template_tokens");
  r.finish();
  auto check = [&](const char* key, int64_t id, bool required) -> int32_t {
    if (id == -1 && !required) return -1;
    POLAR_CHECK(id >= 0 && id < vocab, specials_path, ".", key, ": expected a token id in [0, ",
                vocab, "), got ", id);
    return static_cast<int32_t>(id);
  };
  SpecialTokens& s = out.ids;
  // A sentencepiece template needs a bos; a tokenizer.json's is what its post_processor adds.
  s.bos = check("bos", bos, false);
  s.eos = check("eos", eos, false);
  s.pad = check("pad", pad, false);
  // A language model's tokenizer (a sampled policy's) has neither of POLAR's tokens: both -1.
  const bool lm_only = reward_sep == -1 && reward == -1;
  s.reward_sep = check("reward_sep", reward_sep, require_template_tokens && !lm_only);
  s.reward = check("reward", reward, require_template_tokens && !lm_only);
  if (lm_only) {
    POLAR_CHECK(s.eos >= 0 || s.bos >= 0, specials_path,
                ": a tokenizer without POLAR's tokens needs a bos or an eos id");
  }
  return out;
}

// Without polar_tokenizer.json: the backend's own specials and POLAR's pieces found by name.
SpecialTokens specials_from_pieces(const TokenizerBackend& b, bool require_template_tokens) {
  SpecialTokens s = b.default_specials();
  s.reward_sep = b.piece_to_id("<|reward|>");
  s.reward = b.piece_to_id("<|reward_token|>");
  if (s.reward < 0) s.reward = b.piece_to_id("[UNUSED_TOKEN_130]");  // InternLM2 / POLAR
  if (require_template_tokens) {
    POLAR_CHECK(s.reward_sep >= 0, b.source(),
                ": no \"<|reward|>\" piece; train the tokenizer with ",
                "`polar tokenizer train`, give the ids in ", kSpecialsFile,
                ", or import the model with `polar import`, which chooses them");
    POLAR_CHECK(s.reward >= 0, b.source(), ": no reward token (\"<|reward_token|>\" or ",
                "\"[UNUSED_TOKEN_130]\"); give the ids in ", kSpecialsFile);
  }
  return s;
}

// The ids must agree with each other and with what the backend itself puts first.
void check_specials(const SpecialTokens& s, const TokenizerBackend& b, const std::string& path,
                    const std::string& specials_path) {
  POLAR_CHECK(s.reward < 0 || s.reward != s.reward_sep, path,
              ": the reward token and the <|reward|> separator have the same id ", s.reward);
  if (!b.fixes_bos()) {
    if (s.reward >= 0) POLAR_CHECK(s.bos >= 0, path, ": no bos token (\"<s>\")");
  } else {
    // The ids must be those the serving engines produce: their bos is the post_processor's.
    const int32_t post_bos = b.default_specials().bos;
    POLAR_CHECK(s.bos == post_bos, specials_path, ".bos: ", s.bos, " is not the id ", b.source(),
                "'s post_processor puts first (", post_bos, ", -1 for none)");
  }
}

}  // namespace

std::string read_file_bytes(const std::string& path) { return read_bytes(path); }

Tokenizer Tokenizer::load(const std::string& path) { return load_impl(path, true); }
Tokenizer Tokenizer::load_base(const std::string& path) { return load_impl(path, false); }

Tokenizer Tokenizer::load_impl(const std::string& path, bool require_template_tokens) {
  const std::string specials_path = specials_path_of(path);
  json stored;
  if (fs::exists(specials_path)) stored = read_json_file(specials_path);
  const std::string backend_name = stored_backend_name(stored, specials_path);

  auto impl = std::make_shared<Impl>();
  impl->backend = open_backend(path, backend_name);
  const TokenizerBackend& b = *impl->backend;

  Tokenizer tok;
  SpecialTokens& s = tok.special_;
  std::string stored_fingerprint;
  if (!stored.is_null()) {
    StoredSpecials from_file =
        read_stored_specials(stored, specials_path, b.vocab_size(), require_template_tokens);
    s = from_file.ids;
    stored_fingerprint = std::move(from_file.fingerprint);
    impl->choice = std::move(from_file.choice);
  } else {
    s = specials_from_pieces(b, require_template_tokens);
  }
  check_specials(s, b, path, specials_path);
  if (s.pad < 0) s.pad = b.default_pad(s);
  tok.fingerprint_ = compute_fingerprint(b.bytes(), s);
  POLAR_CHECK(stored_fingerprint.empty() || stored_fingerprint == tok.fingerprint_, specials_path,
              ": fingerprint ", stored_fingerprint, " does not match ", b.source(),
              " with these special ids (", tok.fingerprint_,
              "): the model file or the ids were changed after saving");
  impl->collect_specials(s);
  tok.impl_ = std::move(impl);
  return tok;
}

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  POLAR_CHECK(impl_, "Tokenizer::encode: tokenizer not loaded");
  std::vector<int32_t> ids;
  std::vector<size_t> ends;
  impl_->backend->encode_with_ends(text, ids, ends);
  return ids;
}

void Tokenizer::encode_with_ends(std::string_view text, std::vector<int32_t>& ids,
                                 std::vector<size_t>& ends) const {
  POLAR_CHECK(impl_, "Tokenizer::encode: tokenizer not loaded");
  impl_->backend->encode_with_ends(text, ids, ends);
}

void Tokenizer::encode_split_specials(std::string_view text, std::vector<int32_t>& ids,
                                      std::vector<size_t>& ends) const {
  POLAR_CHECK(impl_, "Tokenizer::encode: tokenizer not loaded");
  if (impl_->backend->splits_added_tokens()) {
    impl_->backend->encode_added(text, ids, ends);
    return;
  }
  const auto& specials = impl_->specials;
  size_t run_begin = 0;
  auto flush_run = [&](size_t run_end) {
    if (run_end == run_begin) return;
    const size_t first = ends.size();
    encode_with_ends(text.substr(run_begin, run_end - run_begin), ids, ends);
    for (size_t i = first; i < ends.size(); ++i) ends[i] += run_begin;
  };
  for (size_t pos = 0; pos < text.size();) {
    const std::pair<std::string, int32_t>* match = nullptr;
    if (!impl_->special_first_byte[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    for (const auto& sp : specials) {  // longest first: the first match is the longest
      if (sp.first[0] == text[pos] && text.compare(pos, sp.first.size(), sp.first) == 0) {
        match = &sp;
        break;
      }
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    flush_run(pos);
    pos += match->first.size();
    ids.push_back(match->second);
    ends.push_back(pos);
    run_begin = pos;
  }
  flush_run(text.size());
}

const std::vector<std::pair<std::string, int32_t>>& Tokenizer::special_pieces() const {
  POLAR_CHECK(impl_, "Tokenizer::special_pieces: tokenizer not loaded");
  return impl_->specials;
}

const std::string& Tokenizer::fingerprint() const { return fingerprint_; }

std::string Tokenizer::short_fingerprint() const {
  const auto colon = fingerprint_.find(':');
  return fingerprint_.substr(colon == std::string::npos ? 0 : colon + 1, 12);
}

const std::string& Tokenizer::model_bytes() const {
  POLAR_CHECK(impl_, "Tokenizer::model_bytes: tokenizer not loaded");
  return impl_->backend->bytes();
}

const char* Tokenizer::model_file_name() const {
  POLAR_CHECK(impl_, "Tokenizer::model_file_name: tokenizer not loaded");
  return impl_->backend->file_name();
}

const char* Tokenizer::backend_name() const {
  return impl_ ? impl_->backend->name() : "(no tokenizer)";
}

const std::string& Tokenizer::source() const {
  static const std::string none = "(no tokenizer)";
  return impl_ ? impl_->backend->source() : none;
}

const TemplateTokenChoice& Tokenizer::template_choice() const {
  static const TemplateTokenChoice none;
  return impl_ ? impl_->choice : none;
}

void require_same_tokenizer(const Tokenizer& weights_tok, const std::string& weights_what,
                            const Tokenizer& ids_tok, const std::string& ids_what) {
  if (weights_tok.fingerprint() == ids_tok.fingerprint()) return;
  throw Error(detail::concat(
      "tokenizer mismatch: ", weights_what, " was trained with tokenizer ", weights_tok.source(),
      " (fingerprint ", weights_tok.short_fingerprint(), ", ", weights_tok.vocab_size(),
      " pieces), but ", ids_what, " uses tokenizer ", ids_tok.source(), " (fingerprint ",
      ids_tok.short_fingerprint(), ", ", ids_tok.vocab_size(),
      " pieces); token ids of one tokenizer mean other text to the other. Use the same tokenizer "
      "for both (rebuild the ",
      "data with the model's tokenizer, or drop the other tokenizer setting)"));
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  POLAR_CHECK(impl_, "Tokenizer::decode: tokenizer not loaded");
  const int64_t vocab = vocab_size();
  for (int32_t id : ids)
    POLAR_CHECK(id >= 0 && id < vocab, "decode: token id ", id, " outside [0, ", vocab, ")");
  return impl_->backend->decode(ids);
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  POLAR_CHECK(impl_, "Tokenizer::id_to_piece: tokenizer not loaded");
  POLAR_CHECK(id >= 0 && id < vocab_size(), "id_to_piece: token id ", id, " outside [0, ",
              vocab_size(), ")");
  return impl_->backend->id_to_piece(id);
}

int32_t Tokenizer::piece_to_id(const std::string& piece) const {
  POLAR_CHECK(impl_, "Tokenizer::piece_to_id: tokenizer not loaded");
  return impl_->backend->piece_to_id(piece);
}

int64_t Tokenizer::vocab_size() const { return impl_ ? impl_->backend->vocab_size() : 0; }

void Tokenizer::save(const std::string& dir) const {
  POLAR_CHECK(impl_, "Tokenizer::save: tokenizer not loaded");
  std::error_code ec;
  fs::create_directories(dir, ec);
  POLAR_CHECK(!ec && fs::is_directory(dir), dir, ": cannot create directory: ", ec.message());
  const TokenizerBackend& b = *impl_->backend;
  write_file_atomic((fs::path(dir) / b.file_name()).string(), b.bytes());
  json j = {{"format", kSpecialsFormat},
            {"bos", special_.bos},
            {"eos", special_.eos},
            {"pad", special_.pad},
            {"reward_sep", special_.reward_sep},
            {"reward", special_.reward},
            {"fingerprint", fingerprint_}};
  if (!b.implied_without_name()) j["backend"] = b.name();
  if (!impl_->choice.how.empty()) j["template_tokens"] = choice_json(impl_->choice);
  write_json_file_atomic((fs::path(dir) / kSpecialsFile).string(), j);
}

// Here because it sets the private fields; the choice is made in template_tokens.cpp.
Tokenizer with_polar_tokens(const Tokenizer& base, const TemplateTokenChoice& choice) {
  POLAR_CHECK(base.impl_, "with_polar_tokens: tokenizer not loaded");
  POLAR_CHECK(choice.reward_sep >= 0 && choice.reward >= 0 && choice.reward_sep != choice.reward,
              base.source(), ": no template tokens chosen (reward_sep ", choice.reward_sep,
              ", reward ", choice.reward, ")");
  auto impl = std::make_shared<Tokenizer::Impl>();
  impl->backend = choice.replaced.empty()
                      ? base.impl_->backend
                      : with_template_added_tokens(*base.impl_->backend, choice);
  impl->choice = choice;
  Tokenizer tok;
  tok.special_ = base.special_;
  tok.special_.reward_sep = choice.reward_sep;
  tok.special_.reward = choice.reward;
  const int64_t vocab = impl->backend->vocab_size();
  POLAR_CHECK(choice.reward_sep < vocab && choice.reward < vocab, base.source(),
              ": template token ids ", choice.reward_sep, "/", choice.reward, " outside [0, ",
              vocab, ")");
  tok.fingerprint_ = compute_fingerprint(impl->backend->bytes(), tok.special_);
  impl->collect_specials(tok.special_);
  tok.impl_ = std::move(impl);
  return tok;
}

}  // namespace polar
