// Tokenizer: loading, encoding and saving a sentencepiece model with POLAR's special ids.
#include "polar/tokenizer/tokenizer.h"

#include <openssl/evp.h>
#include <sentencepiece_processor.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_set>

#include "polar/common/error.h"
#include "polar/common/json_config.h"

namespace polar {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kModelFile = "tokenizer.model";
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

}  // namespace

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
  std::string serialized;                                 // the model proto, written back by save()
  std::string source;                                     // where it was loaded from, for messages
  std::vector<std::pair<std::string, int32_t>> specials;  // longest first
  std::array<bool, 256> special_first_byte{};             // a special piece starts with this byte

  // The strings Hugging Face tokenizers split out of text: control and unknown pieces and the
  // special ids, longest first.
  void collect_specials(const SpecialTokens& s) {
    std::unordered_set<int32_t> seen;
    auto add = [&](int32_t id) {
      if (id < 0 || id >= sp.GetPieceSize() || !seen.insert(id).second) return;
      const std::string& piece = sp.IdToPiece(id);
      if (!piece.empty()) specials.emplace_back(piece, id);
    };
    for (int32_t id = 0; id < sp.GetPieceSize(); ++id) {
      if (sp.IsControl(id) || sp.IsUnknown(id)) add(id);
    }
    for (int32_t id : {s.bos, s.eos, s.pad, s.reward_sep, s.reward}) add(id);
    std::stable_sort(specials.begin(), specials.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    for (const auto& sp : specials)
      special_first_byte[static_cast<unsigned char>(sp.first[0])] = true;
  }

  // -1 when the piece is not in the vocabulary (sentencepiece maps unknown pieces to unk).
  int32_t find(const std::string& piece) const {
    int id = sp.PieceToId(piece);
    if (id < 0 || id >= sp.GetPieceSize() || sp.IdToPiece(id) != piece) return -1;
    return id;
  }
};

Tokenizer Tokenizer::load(const std::string& path) {
  std::string model_path = path;
  std::string specials_path;
  if (fs::is_directory(path)) {
    model_path = (fs::path(path) / kModelFile).string();
    specials_path = (fs::path(path) / kSpecialsFile).string();
    POLAR_CHECK(fs::exists(model_path), path, ": not a tokenizer directory (no ", kModelFile, ")");
  } else {
    // A .model file given directly still takes the special ids saved beside it.
    specials_path = (fs::path(path).parent_path() / kSpecialsFile).string();
  }
  POLAR_CHECK(fs::is_regular_file(model_path), model_path, ": tokenizer model not found");

  auto impl = std::make_shared<Impl>();
  impl->source = model_path;
  impl->serialized = read_bytes(model_path);
  auto status = impl->sp.LoadFromSerializedProto(impl->serialized);
  POLAR_CHECK(status.ok(), model_path, ": not a valid sentencepiece model: ", status.ToString());
  const int64_t vocab = impl->sp.GetPieceSize();
  POLAR_CHECK(vocab > 0, model_path, ": sentencepiece model has an empty vocabulary");

  Tokenizer tok;
  SpecialTokens& s = tok.special_;
  std::string stored_fingerprint;  // absent in files written before fingerprints existed
  if (!specials_path.empty() && fs::exists(specials_path)) {
    json j = read_json_file(specials_path);
    ConfigReader r(j, specials_path);
    std::string format = kSpecialsFormat;
    r.get("format", format);
    POLAR_CHECK(format == kSpecialsFormat, specials_path, ".format: expected \"", kSpecialsFormat,
                "\", got \"", format, "\"");
    int64_t bos = -1, eos = -1, pad = -1, reward_sep = -1, reward = -1;
    r.get("fingerprint", stored_fingerprint);
    r.get("bos", bos);
    r.get("eos", eos);
    r.get("pad", pad);
    r.get("reward_sep", reward_sep);
    r.get("reward", reward);
    r.finish();
    auto check = [&](const char* key, int64_t id, bool required) -> int32_t {
      if (id == -1 && !required) return -1;
      POLAR_CHECK(id >= 0 && id < vocab, specials_path, ".", key, ": expected a token id in [0, ",
                  vocab, "), got ", id);
      return static_cast<int32_t>(id);
    };
    s.bos = check("bos", bos, false);
    s.eos = check("eos", eos, false);
    s.pad = check("pad", pad, false);
    // A language model's tokenizer (a sampled policy's) has neither of POLAR's tokens: both -1.
    const bool lm_only = reward_sep == -1 && reward == -1;
    s.reward_sep = check("reward_sep", reward_sep, !lm_only);
    s.reward = check("reward", reward, !lm_only);
    if (lm_only) {
      POLAR_CHECK(s.eos >= 0 || s.bos >= 0, specials_path,
                  ": a tokenizer without POLAR's tokens needs a bos or an eos id");
    }
  } else {
    const Impl& m = *impl;
    s.bos = m.sp.bos_id() >= 0 ? m.sp.bos_id() : m.find("<s>");
    s.eos = m.sp.eos_id() >= 0 ? m.sp.eos_id() : m.find("</s>");
    s.pad = m.sp.pad_id() >= 0 ? m.sp.pad_id() : m.find("<pad>");
    if (s.pad < 0) s.pad = m.sp.unk_id() >= 0 ? m.sp.unk_id() : m.find("<unk>");
    s.reward_sep = m.find("<|reward|>");
    s.reward = m.find("<|reward_token|>");
    if (s.reward < 0) s.reward = m.find("[UNUSED_TOKEN_130]");  // InternLM2 / released POLAR
    POLAR_CHECK(s.reward_sep >= 0, model_path,
                ": no \"<|reward|>\" piece; train the tokenizer with ",
                "`polar tokenizer train` or give the ids in ", kSpecialsFile);
    POLAR_CHECK(s.reward >= 0, model_path, ": no reward token (\"<|reward_token|>\" or ",
                "\"[UNUSED_TOKEN_130]\"); give the ids in ", kSpecialsFile);
  }
  const bool has_reward_tokens = s.reward >= 0;
  POLAR_CHECK(!has_reward_tokens || s.reward != s.reward_sep, path,
              ": the reward token and the <|reward|> separator have the same id ", s.reward);
  POLAR_CHECK(s.bos >= 0 || !has_reward_tokens, path, ": no bos token (\"<s>\")");
  if (s.pad < 0) s.pad = 0;  // padding is never read; any valid id will do
  tok.fingerprint_ =
      "sha256:" + sha256_hex(impl->serialized + "\npolar-ids bos=" + std::to_string(s.bos) +
                             " reward_sep=" + std::to_string(s.reward_sep) +
                             " reward=" + std::to_string(s.reward));
  POLAR_CHECK(stored_fingerprint.empty() || stored_fingerprint == tok.fingerprint_, specials_path,
              ": fingerprint ", stored_fingerprint, " does not match ", model_path,
              " with these special ids (", tok.fingerprint_,
              "): the model file or the ids were changed after saving");
  impl->collect_specials(s);
  tok.impl_ = std::move(impl);
  return tok;
}

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  POLAR_CHECK(impl_, "Tokenizer::encode: tokenizer not loaded");
  std::vector<int> ids;
  auto status = impl_->sp.Encode(text, &ids);
  POLAR_CHECK(status.ok(), impl_->source, ": encode failed: ", status.ToString());
  return std::vector<int32_t>(ids.begin(), ids.end());
}

void Tokenizer::encode_with_ends(std::string_view text, std::vector<int32_t>& ids,
                                 std::vector<size_t>& ends) const {
  POLAR_CHECK(impl_, "Tokenizer::encode: tokenizer not loaded");
  sentencepiece::ImmutableSentencePieceText spt;
  auto status = impl_->sp.Encode(absl::string_view(text.data(), text.size()), spt.mutable_proto());
  POLAR_CHECK(status.ok(), impl_->source, ": encode failed: ", status.ToString());
  size_t last = 0;
  for (size_t i = 0; i < spt.pieces_size(); ++i) {
    const auto piece = spt.pieces(static_cast<int>(i));
    last = std::max<size_t>(last, std::min<size_t>(piece.end(), text.size()));
    ids.push_back(static_cast<int32_t>(piece.id()));
    ends.push_back(last);
  }
}

void Tokenizer::encode_split_specials(std::string_view text, std::vector<int32_t>& ids,
                                      std::vector<size_t>& ends) const {
  POLAR_CHECK(impl_, "Tokenizer::encode: tokenizer not loaded");
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
  return impl_->serialized;
}

const std::string& Tokenizer::source() const {
  static const std::string none = "(no tokenizer)";
  return impl_ ? impl_->source : none;
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
  std::string text;
  auto status = impl_->sp.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  POLAR_CHECK(status.ok(), impl_->source, ": decode failed: ", status.ToString());
  return text;
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  POLAR_CHECK(impl_, "Tokenizer::id_to_piece: tokenizer not loaded");
  POLAR_CHECK(id >= 0 && id < vocab_size(), "id_to_piece: token id ", id, " outside [0, ",
              vocab_size(), ")");
  return impl_->sp.IdToPiece(id);
}

int32_t Tokenizer::piece_to_id(const std::string& piece) const {
  POLAR_CHECK(impl_, "Tokenizer::piece_to_id: tokenizer not loaded");
  return impl_->find(piece);
}

int64_t Tokenizer::vocab_size() const { return impl_ ? impl_->sp.GetPieceSize() : 0; }

void Tokenizer::save(const std::string& dir) const {
  POLAR_CHECK(impl_, "Tokenizer::save: tokenizer not loaded");
  std::error_code ec;
  fs::create_directories(dir, ec);
  POLAR_CHECK(!ec && fs::is_directory(dir), dir, ": cannot create directory: ", ec.message());
  write_file_atomic((fs::path(dir) / kModelFile).string(), impl_->serialized);
  json j = {{"format", kSpecialsFormat},
            {"bos", special_.bos},
            {"eos", special_.eos},
            {"pad", special_.pad},
            {"reward_sep", special_.reward_sep},
            {"reward", special_.reward},
            {"fingerprint", fingerprint_}};
  write_json_file_atomic((fs::path(dir) / kSpecialsFile).string(), j);
}

}  // namespace polar
