// Tokenizer: loading, encoding and saving a sentencepiece model with POLAR's special ids.
#include "polar/tokenizer/tokenizer.h"

#include <sentencepiece_processor.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

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

}  // namespace

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
  std::string serialized;  // the model proto, written back by save()
  std::string source;      // where it was loaded from, for messages

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
  if (!specials_path.empty() && fs::exists(specials_path)) {
    json j = read_json_file(specials_path);
    ConfigReader r(j, specials_path);
    std::string format = kSpecialsFormat;
    r.get("format", format);
    POLAR_CHECK(format == kSpecialsFormat, specials_path, ".format: expected \"", kSpecialsFormat,
                "\", got \"", format, "\"");
    int64_t bos = -1, eos = -1, pad = -1, reward_sep = -1, reward = -1;
    r.get("bos", bos);
    r.get("eos", eos);
    r.get("pad", pad);
    r.get("reward_sep", reward_sep);
    r.get("reward", reward);
    r.finish();
    auto check = [&](const char* key, int64_t id, bool required) -> int32_t {
      if (id == -1 && !required) return -1;
      POLAR_CHECK(id >= 0 && id < vocab, specials_path, ".", key, ": expected a token id in [0, ", vocab,
                  "), got ", id);
      return static_cast<int32_t>(id);
    };
    s.bos = check("bos", bos, false);
    s.eos = check("eos", eos, false);
    s.pad = check("pad", pad, false);
    s.reward_sep = check("reward_sep", reward_sep, true);
    s.reward = check("reward", reward, true);
  } else {
    const Impl& m = *impl;
    s.bos = m.sp.bos_id() >= 0 ? m.sp.bos_id() : m.find("<s>");
    s.eos = m.sp.eos_id() >= 0 ? m.sp.eos_id() : m.find("</s>");
    s.pad = m.sp.pad_id() >= 0 ? m.sp.pad_id() : m.find("<pad>");
    if (s.pad < 0) s.pad = m.sp.unk_id() >= 0 ? m.sp.unk_id() : m.find("<unk>");
    s.reward_sep = m.find("<|reward|>");
    s.reward = m.find("<|reward_token|>");
    if (s.reward < 0) s.reward = m.find("[UNUSED_TOKEN_130]");  // InternLM2 / released POLAR
    POLAR_CHECK(s.reward_sep >= 0, model_path, ": no \"<|reward|>\" piece; train the tokenizer with ",
                "`polar tokenizer train` or give the ids in ", kSpecialsFile);
    POLAR_CHECK(s.reward >= 0, model_path, ": no reward token (\"<|reward_token|>\" or ",
                "\"[UNUSED_TOKEN_130]\"); give the ids in ", kSpecialsFile);
  }
  POLAR_CHECK(s.reward != s.reward_sep, path, ": the reward token and the <|reward|> separator have the same id ",
              s.reward);
  POLAR_CHECK(s.bos >= 0, path, ": no bos token (\"<s>\")");
  if (s.pad < 0) s.pad = 0;  // padding is never read; any valid id will do
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

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  POLAR_CHECK(impl_, "Tokenizer::decode: tokenizer not loaded");
  const int64_t vocab = vocab_size();
  for (int32_t id : ids) POLAR_CHECK(id >= 0 && id < vocab, "decode: token id ", id, " outside [0, ", vocab, ")");
  std::string text;
  auto status = impl_->sp.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  POLAR_CHECK(status.ok(), impl_->source, ": decode failed: ", status.ToString());
  return text;
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  POLAR_CHECK(impl_, "Tokenizer::id_to_piece: tokenizer not loaded");
  POLAR_CHECK(id >= 0 && id < vocab_size(), "id_to_piece: token id ", id, " outside [0, ", vocab_size(), ")");
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
  json j = {{"format", kSpecialsFormat}, {"bos", special_.bos},        {"eos", special_.eos},
            {"pad", special_.pad},       {"reward_sep", special_.reward_sep}, {"reward", special_.reward}};
  write_json_file_atomic((fs::path(dir) / kSpecialsFile).string(), j);
}

}  // namespace polar
