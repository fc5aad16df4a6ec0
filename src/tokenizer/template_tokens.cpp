// POLAR's <|reward|> separator and reward token for a base tokenizer that lacks them.
#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "backend.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"

namespace polar {

namespace {

constexpr const char* kSep = "<|reward|>";
constexpr const char* kReward = "<|reward_token|>";

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The id of `content` when the tokenizer splits it out of text as one token, else -1.
int32_t split_out_id(const Tokenizer& tok, const std::string& content) {
  for (const auto& [piece, id] : tok.special_pieces())
    if (piece == content) return id;
  return -1;
}

}  // namespace

TemplateTokenChoice choose_polar_tokens(const Tokenizer& base, int64_t model_rows) {
  TemplateTokenChoice c;
  const int64_t vocab = base.vocab_size();
  POLAR_CHECK(model_rows < 0 || model_rows >= vocab, base.source(), ": the tokenizer has ", vocab,
              " tokens but the model only ", model_rows, " embedding rows");
  const int64_t rows = model_rows < 0 ? vocab : model_rows;
  c.vocab_size = vocab;
  c.embedding_rows = rows;
  const bool json_backend = std::string(base.backend_name()) == "tokenizer.json";
  auto existing = [&](const std::string& content) {
    return json_backend ? split_out_id(base, content) : base.piece_to_id(content);
  };
  c.reward_sep = existing(kSep);
  c.reward = existing(kReward);
  std::string reward_name = kReward;
  if (c.reward < 0 && existing("[UNUSED_TOKEN_130]") >= 0) {
    c.reward = existing("[UNUSED_TOKEN_130]");  // InternLM2 / released POLAR
    reward_name = "[UNUSED_TOKEN_130]";
  }
  if (c.reward_sep >= 0 && c.reward >= 0) {
    c.how = "existing";
    c.description = detail::concat("template tokens: the tokenizer's own ", kSep, " (id ",
                                   c.reward_sep, ") and ", reward_name, " (id ", c.reward, ")");
    return c;
  }
  POLAR_CHECK(json_backend, base.source(), ": this sentencepiece tokenizer has no ",
              c.reward_sep < 0 ? kSep : kReward,
              " piece and cannot gain one; train one with `polar tokenizer train` or give the "
              "ids in polar_tokenizer.json");
  std::vector<int32_t*> missing;
  if (c.reward_sep < 0) missing.push_back(&c.reward_sep);
  if (c.reward < 0) missing.push_back(&c.reward);
  auto name_of = [&](const int32_t* slot) { return slot == &c.reward_sep ? kSep : kReward; };

  // Unused reserved special tokens, lowest ids first.
  const SpecialTokens& s = base.special();
  std::vector<std::pair<int32_t, std::string>> reserved;
  for (const auto& [piece, id] : base.special_pieces()) {
    const std::string l = lower(piece);
    const bool named =
        l.find("reserved") != std::string::npos || l.find("unused") != std::string::npos;
    if (named && id != s.bos && id != s.eos && id != s.pad && id != c.reward_sep && id != c.reward)
      reserved.emplace_back(id, piece);
  }
  std::sort(reserved.begin(), reserved.end());
  std::vector<std::string> parts;
  if (reserved.size() >= missing.size()) {
    c.how = "reserved";
    for (size_t i = 0; i < missing.size(); ++i) {
      *missing[i] = reserved[i].first;
      c.replaced.emplace_back(reserved[i].second, reserved[i].first);
      parts.push_back(detail::concat("reserved ", reserved[i].second, " (id ", reserved[i].first,
                                     ") renamed to ", name_of(missing[i])));
    }
  } else {
    const bool spare = rows >= vocab + static_cast<int64_t>(missing.size());
    c.how = spare ? "spare_rows" : "added";
    for (size_t i = 0; i < missing.size(); ++i) {
      const auto id = static_cast<int32_t>(vocab + static_cast<int64_t>(i));
      *missing[i] = id;
      c.replaced.emplace_back("", id);
      parts.push_back(detail::concat("new ", name_of(missing[i]), " (id ", id, ")"));
    }
    c.vocab_size = vocab + static_cast<int64_t>(missing.size());
    c.embedding_rows = std::max(rows, c.vocab_size);
  }
  std::string d = "template tokens: ";
  for (size_t i = 0; i < parts.size(); ++i) d += (i ? " and " : "") + parts[i];
  if (c.how == "spare_rows")
    d += detail::concat(", at embedding rows the tokenizer did not use (", rows, " rows, ", vocab,
                        " tokens)");
  if (c.how == "added")
    d += detail::concat("; the embedding grows from ", rows, " to ", c.embedding_rows,
                        " rows (new rows: the mean of the others)");
  c.description = d;
  return c;
}

std::shared_ptr<const TokenizerBackend> with_template_added_tokens(
    const TokenizerBackend& base, const TemplateTokenChoice& choice) {
  POLAR_CHECK(std::string(base.name()) == "tokenizer.json", base.source(),
              ": only a tokenizer.json can gain tokens");
  using ojson = nlohmann::ordered_json;
  ojson j = ojson::parse(base.bytes());
  ojson& added = j["added_tokens"];
  if (!added.is_array()) added = ojson::array();
  for (const auto& [old, id] : choice.replaced) {
    const std::string content = id == choice.reward_sep ? kSep : kReward;
    ojson* entry = nullptr;
    for (auto& t : added)
      if (t.value("id", int64_t{-1}) == id) entry = &t;
    if (old.empty()) {
      POLAR_CHECK(entry == nullptr && base.id_to_piece(id).empty(), base.source(), ": id ", id,
                  " is already used");
      added.push_back(ojson::object());
      entry = &added.back();
      (*entry)["id"] = id;
    } else {
      POLAR_CHECK(entry != nullptr && (*entry)["content"] == old, base.source(),
                  ": no added token ", old, " with id ", id);
      ojson& vocab = j["model"]["vocab"];
      if (vocab.is_object() && vocab.contains(old) && vocab[old] == id) {
        vocab.erase(old);
        vocab[content] = id;
      }
    }
    (*entry)["content"] = content;
    (*entry)["single_word"] = false;
    (*entry)["lstrip"] = false;
    (*entry)["rstrip"] = false;
    (*entry)["normalized"] = false;
    (*entry)["special"] = true;
  }
  return make_hf_json_backend(j.dump(2), base.source() + " (with POLAR's template tokens)");
}

}  // namespace polar
