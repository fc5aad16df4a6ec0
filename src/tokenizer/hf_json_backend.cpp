// The tokenizer.json backend: added tokens, normalizer, pre-tokenizer, BPE, post_processor and
// decoder of a Hugging Face fast tokenizer, run as the `tokenizers` library runs them. A
// component this file does not implement is an error naming it and its JSON path.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "backend.h"
#include "hf_bpe.h"
#include "hf_decoder.h"
#include "hf_text.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"

namespace polar {

namespace {

using hf::Span;
using nlohmann::json;

struct AddedToken {
  std::string content;  // matched text (normalised when `normalized`)
  std::string original;
  int32_t id = -1;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// Tokens matched leftmost-longest, as the library's Aho-Corasick automaton finds them.
class AddedTokenSet {
 public:
  void add(const AddedToken* t) {
    if (t->content.empty()) return;
    by_first_[static_cast<unsigned char>(t->content[0])].push_back(t);
  }
  void finish() {
    for (auto& list : by_first_)
      std::stable_sort(list.begin(), list.end(), [](const AddedToken* a, const AddedToken* b) {
        return a->content.size() > b->content.size();
      });
  }
  bool empty() const {
    for (const auto& l : by_first_)
      if (!l.empty()) return false;
    return true;
  }
  // AddedVocabulary::find_matches: (token or nullptr, begin, end) covering `s`.
  struct Piece {
    const AddedToken* token;
    size_t b, e;
  };
  void split(std::string_view s, std::vector<Piece>& out) const {
    size_t start_offset = 0, pos = 0;
    while (pos < s.size()) {
      const auto& list = by_first_[static_cast<unsigned char>(s[pos])];
      const AddedToken* match = nullptr;
      for (const AddedToken* t : list) {
        if (s.compare(pos, t->content.size(), t->content) == 0) {
          match = t;
          break;
        }
      }
      if (match == nullptr) {
        ++pos;
        continue;
      }
      size_t start = pos, stop = pos + match->content.size();
      pos = stop;  // the automaton goes on after the match, kept or not
      if (match->single_word) {
        size_t len = 0;
        const bool word_before =
            start > 0 && hf::is_word_char(hf::decode_utf8_before(s, start, &len));
        const bool word_after = stop < s.size() && hf::is_word_char(hf::decode_utf8(s, stop, &len));
        if (word_before || word_after) continue;
      }
      if (match->lstrip) {
        size_t b = start, len = 0;
        while (b > 0 && hf::is_white_space(hf::decode_utf8_before(s, b, &len))) b -= len;
        start = std::max(b, start_offset);
      }
      if (match->rstrip) {
        size_t len = 0;
        while (stop < s.size() && hf::is_white_space(hf::decode_utf8(s, stop, &len))) stop += len;
      }
      if (start_offset < start) out.push_back({nullptr, start_offset, start});
      out.push_back({match, start, stop});
      start_offset = stop;
    }
    if (start_offset < s.size()) out.push_back({nullptr, start_offset, s.size()});
  }

 private:
  std::array<std::vector<const AddedToken*>, 256> by_first_;
};

bool valid_utf8(std::string_view s, size_t* bad) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n != 0 && i + n <= s.size() && !(n == 2 && c < 0xC2);
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && n == 3) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
    }
    if (ok && n == 4) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90) && c <= 0xF4;
    }
    if (!ok) {
      *bad = i;
      return false;
    }
    i += n;
  }
  return true;
}

class HfJsonBackend final : public TokenizerBackend {
 public:
  HfJsonBackend(std::string bytes, const std::string& source)
      : bytes_(std::move(bytes)), source_(source) {
    const json j = parse_json_text(bytes_, source_);
    POLAR_CHECK(j.is_object(), source_, ": expected a JSON object");
    for (const char* key : {"truncation", "padding"}) {
      POLAR_CHECK(!j.contains(key) || j[key].is_null(), source_, ".", key,
                  ": not supported (expected null; polar never truncates or pads inside the "
                  "tokenizer)");
    }
    normalizer_ =
        std::make_unique<hf::Normalizer>(j.value("normalizer", json()), source_ + ": normalizer");
    pre_ = std::make_unique<hf::PreTokenizer>(j.value("pre_tokenizer", json()),
                                              source_ + ": pre_tokenizer");
    POLAR_CHECK(j.contains("model"), source_, ": no \"model\"");
    model_ = std::make_unique<hf::BpeModel>(j["model"], pre_->byte_level(), source_ + ": model");
    decoder_ = std::make_unique<hf::Decoder>(j.value("decoder", json()), source_ + ": decoder");
    read_added_tokens(j.value("added_tokens", json::array()));
    read_post_processor(j.value("post_processor", json()), source_ + ": post_processor");
  }

  const char* name() const override { return "tokenizer.json"; }
  const char* file_name() const override { return "tokenizer.json"; }
  const std::string& bytes() const override { return bytes_; }
  const std::string& source() const override { return source_; }
  bool splits_added_tokens() const override { return true; }

  void encode_with_ends(std::string_view text, std::vector<int32_t>& ids,
                        std::vector<size_t>& ends) const override {
    check_utf8(text);
    hf::Arena arena;
    encode_run(text, 0, text.size(), arena, ids, ends);
  }

  void encode_added(std::string_view text, std::vector<int32_t>& ids,
                    std::vector<size_t>& ends) const override {
    check_utf8(text);
    hf::Arena arena;
    std::vector<AddedTokenSet::Piece> pieces;
    raw_tokens_.split(text, pieces);
    for (const auto& p : pieces) {
      if (p.token) {
        ids.push_back(p.token->id);
        ends.push_back(p.e);
      } else {
        encode_run(text, p.b, p.e, arena, ids, ends);
      }
    }
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
      auto it = added_by_id_.find(id);
      if (it != added_by_id_.end()) {
        tokens.push_back(it->second->original);
      } else if (const std::string* t = model_->token(id)) {
        tokens.push_back(*t);
      }  // an id in a gap of the vocabulary decodes to nothing, as in the library
    }
    return decoder_->decode(std::move(tokens));
  }

  std::string id_to_piece(int32_t id) const override {
    auto it = added_by_id_.find(id);
    if (it != added_by_id_.end()) return it->second->original;
    const std::string* t = model_->token(id);
    return t ? *t : std::string();
  }

  int32_t piece_to_id(const std::string& piece) const override {
    auto it = added_by_content_.find(piece);
    if (it != added_by_content_.end()) return it->second;
    return model_->find(piece);
  }

  int64_t vocab_size() const override { return vocab_size_; }

  SpecialTokens default_specials() const override {
    SpecialTokens s;
    s.bos = bos_;
    auto first = [&](std::initializer_list<const char*> names) {
      for (const char* n : names) {
        const int32_t id = piece_to_id(n);
        if (id >= 0) return id;
      }
      return int32_t{-1};
    };
    s.eos = first({"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"});
    s.pad = first({"<pad>", "<|pad|>", "<|finetune_right_pad_id|>"});
    return s;
  }

  std::vector<std::pair<std::string, int32_t>> special_pieces(const SpecialTokens&) const override {
    std::vector<std::pair<std::string, int32_t>> out;
    for (const auto& t : added_) out.emplace_back(t->original, t->id);
    return out;
  }

  // The id the post_processor puts before the text, -1 when none.
  int32_t bos() const { return bos_; }

 private:
  void check_utf8(std::string_view text) const {
    size_t bad = 0;
    POLAR_CHECK(valid_utf8(text, &bad), source_, ": text is not valid UTF-8 at byte ", bad);
  }

  // One run of text between raw added tokens: normalizer, normalized added tokens,
  // pre-tokenizer, model.
  void encode_run(std::string_view text, size_t b, size_t e, hf::Arena& arena,
                  std::vector<int32_t>& ids, std::vector<size_t>& ends) const {
    if (e <= b) return;
    const Span raw{text.substr(b, e - b), nullptr, static_cast<uint32_t>(b),
                   static_cast<uint32_t>(b)};
    const Span norm = normalizer_->apply(raw, arena);
    if (normalized_tokens_.empty()) {
      encode_normalized(norm, arena, ids, ends);
      return;
    }
    std::vector<AddedTokenSet::Piece> pieces;
    normalized_tokens_.split(norm.text, pieces);
    for (const auto& p : pieces) {
      if (p.token) {
        ids.push_back(p.token->id);
        ends.push_back(norm.end_at(p.e - 1));
      } else {
        encode_normalized(norm.sub(p.b, p.e), arena, ids, ends);
      }
    }
  }

  void encode_normalized(const Span& s, hf::Arena& arena, std::vector<int32_t>& ids,
                         std::vector<size_t>& ends) const {
    thread_local std::vector<Span> words;
    thread_local std::vector<uint32_t> lens;
    words.clear();
    pre_->apply(s, arena, words);
    for (const Span& w : words) {
      lens.clear();
      const size_t first = ids.size();
      model_->tokenize(w.text, ids, lens);
      size_t at = 0;
      for (size_t i = first; i < ids.size(); ++i) {
        at = std::min(at + lens[i - first], w.text.size());
        ends.push_back(at == 0 ? w.start : w.end_at(at - 1));
      }
    }
  }

  void read_added_tokens(const json& list) {
    const std::string where = source_ + ": added_tokens";
    POLAR_CHECK(list.is_array(), where, ": expected an array");
    int64_t max_id = model_->size() - 1;
    for (size_t i = 0; i < list.size(); ++i) {
      const json& t = list[i];
      const std::string w = where + "[" + std::to_string(i) + "]";
      POLAR_CHECK(t.is_object() && t.contains("id") && t["id"].is_number_integer() &&
                      t.contains("content") && t["content"].is_string(),
                  w, ": expected {\"id\": int, \"content\": string, ...}");
      auto a = std::make_unique<AddedToken>();
      // Range-checked before narrowing: 2^32 + 5 must not become id 5.
      POLAR_CHECK(t["id"].get<int64_t>() >= 0 && t["id"].get<int64_t>() < (1 << 30) &&
                      !(t["id"].is_number_unsigned() && t["id"].get<uint64_t>() >= (1u << 30)),
                  w, ".id: expected a token id in [0, 2^30), got ", t["id"].dump());
      a->id = t["id"].get<int32_t>();
      a->original = t["content"].get<std::string>();
      auto flag = [&](const char* key, bool fallback) {
        if (!t.contains(key)) return fallback;
        POLAR_CHECK(t[key].is_boolean(), w, ".", key, ": expected true or false");
        return t[key].get<bool>();
      };
      a->special = flag("special", false);
      a->single_word = flag("single_word", false);
      a->lstrip = flag("lstrip", false);
      a->rstrip = flag("rstrip", false);
      a->normalized = flag("normalized", !a->special);
      a->content = a->normalized ? normalizer_->apply(a->original) : a->original;
      max_id = std::max<int64_t>(max_id, a->id);
      added_by_content_[a->original] = a->id;
      added_by_id_[a->id] = a.get();
      added_.push_back(std::move(a));
    }
    for (const auto& a : added_) (a->normalized ? normalized_tokens_ : raw_tokens_).add(a.get());
    raw_tokens_.finish();
    normalized_tokens_.finish();
    vocab_size_ = max_id + 1;
  }

  // The ids TemplateProcessing puts around a single text; polar keeps one leading id (bos).
  void collect_template(const json& p, const std::string& where, std::vector<int32_t>& before,
                        std::vector<int32_t>& after) {
    const std::string type = p.is_object() ? p.value("type", std::string()) : std::string();
    if (type == "ByteLevel") return;  // offsets only
    if (type == "Sequence") {
      POLAR_CHECK(p.contains("processors") && p["processors"].is_array(), where,
                  ".processors: expected an array");
      for (size_t i = 0; i < p["processors"].size(); ++i)
        collect_template(p["processors"][i], where + ".processors[" + std::to_string(i) + "]",
                         before, after);
      return;
    }
    POLAR_CHECK(type == "TemplateProcessing", where, ": post_processor \"", type,
                "\" is not supported (supported: TemplateProcessing, ByteLevel, Sequence, null)");
    POLAR_CHECK(p.contains("single") && p["single"].is_array(), where,
                ".single: expected an array");
    bool seen_text = false;
    for (const auto& piece : p["single"]) {
      if (piece.contains("Sequence")) {
        seen_text = true;
        continue;
      }
      POLAR_CHECK(piece.contains("SpecialToken") && piece["SpecialToken"].contains("id"), where,
                  ".single: expected SpecialToken or Sequence entries, got ", piece.dump());
      const std::string name = piece["SpecialToken"]["id"].get<std::string>();
      const json& specials = p.value("special_tokens", json::object());
      POLAR_CHECK(specials.contains(name) && specials[name].contains("ids") &&
                      specials[name]["ids"].is_array(),
                  where, ".special_tokens: no ids for ", json(name).dump());
      for (const auto& id : specials[name]["ids"]) {
        POLAR_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 &&
                        id.get<int64_t>() < (1 << 30) &&
                        !(id.is_number_unsigned() && id.get<uint64_t>() >= (1u << 30)),
                    where, ".special_tokens[", json(name).dump(), "].ids: expected token ids, got ",
                    id.dump());
        (seen_text ? after : before).push_back(id.get<int32_t>());
      }
    }
  }

  void read_post_processor(const json& p, const std::string& where) {
    if (p.is_null()) return;
    std::vector<int32_t> before, after;
    collect_template(p, where, before, after);
    POLAR_CHECK(after.empty(), where, ": adds ", after.size(),
                " token(s) after the text; POLAR's reward token must be the last token");
    POLAR_CHECK(before.size() <= 1, where, ": puts ", before.size(),
                " tokens before the text; polar supports one (a bos)");
    if (!before.empty()) {
      bos_ = before[0];
      POLAR_CHECK(bos_ >= 0 && bos_ < vocab_size_, where, ": bos id ", bos_,
                  " outside the vocabulary");
    }
  }

  std::string bytes_, source_;
  std::unique_ptr<hf::Normalizer> normalizer_;
  std::unique_ptr<hf::PreTokenizer> pre_;
  std::unique_ptr<hf::BpeModel> model_;
  std::unique_ptr<hf::Decoder> decoder_;
  std::vector<std::unique_ptr<AddedToken>> added_;
  std::unordered_map<std::string, int32_t> added_by_content_;
  std::unordered_map<int32_t, const AddedToken*> added_by_id_;
  AddedTokenSet raw_tokens_, normalized_tokens_;
  int64_t vocab_size_ = 0;
  int32_t bos_ = -1;
};

}  // namespace

std::shared_ptr<const TokenizerBackend> make_hf_json_backend(std::string bytes,
                                                             const std::string& source) {
  try {
    return std::make_shared<HfJsonBackend>(std::move(bytes), source);
  } catch (const nlohmann::json::exception& e) {  // a value of another type than the format's
    throw Error(source + ": a value of the wrong type (" + e.what() + ")");
  }
}

std::shared_ptr<const TokenizerBackend> load_hf_json_backend(const std::string& path) {
  return make_hf_json_backend(read_file_bytes(path), path);
}

}  // namespace polar
