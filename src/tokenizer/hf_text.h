// Text steps of a Hugging Face tokenizer.json, as the `tokenizers` library runs them: normalizers
// (utf8proc), the split patterns of pre-tokenizers (PCRE2 with its JIT), Metaspace and ByteLevel.
// Every piece of text keeps, per byte, the end of the original text it came from, so token ids
// carry the byte where their text ends.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace polar::hf {

// Normalized text: bytes, and for byte i the end (exclusive) of the original text it came from.
struct Span {
  std::string_view text;
  const uint32_t* ends = nullptr;  // nullptr: byte i is original byte base + i
  uint32_t base = 0;
  uint32_t start = 0;  // where the span starts in the original text
  uint32_t end_at(size_t i) const { return ends ? ends[i] : base + static_cast<uint32_t>(i) + 1; }
  Span sub(size_t from, size_t to) const;
};

// Text made by a step (a prepended "▁", a normalised run), owned for one encode call.
struct OwnedText {
  std::string text;
  std::vector<uint32_t> ends;
  uint32_t start = 0;
  Span span() const { return Span{text, ends.data(), 0, start}; }
};
using Arena = std::vector<std::unique_ptr<OwnedText>>;

// A compiled PCRE2 pattern (UTF + UCP, JIT). `onig_pattern` is the pattern as the `tokenizers`
// library (Oniguruma) reads it; \s and \S are rewritten to Unicode White_Space, which is what
// Oniguruma means by them (PCRE2's \s lacks U+0085).
class Regex {
 public:
  Regex(const std::string& onig_pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Non-empty matches, left to right, as (begin, end) byte offsets. Throws on invalid UTF-8.
  void find_all(std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& out) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8
  std::string where_;
};

// A literal string as a pattern.
std::string regex_escape(const std::string& literal);

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
SplitBehavior parse_split_behavior(const nlohmann::json& j, const std::string& where);

// NormalizedString::split: `matches` are the pattern's matches in span.text; the pieces are
// appended to `out` (empty pieces dropped).
void split_span(const Span& span, const std::vector<std::pair<uint32_t, uint32_t>>& matches,
                bool invert, SplitBehavior behavior, std::vector<Span>& out);

// A normalizer: NFC, NFKC, NFD, NFKD, Prepend, Replace, Sequence or null.
class Normalizer {
 public:
  Normalizer(const nlohmann::json& j, const std::string& where);
  ~Normalizer();
  bool empty() const { return steps_.empty(); }
  // The normalised text of `in`; `in` itself when nothing changes.
  Span apply(const Span& in, Arena& arena) const;
  // A plain string normalised (for added tokens with normalized: true).
  std::string apply(const std::string& text) const;

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
};

// A pre-tokenizer: Split, ByteLevel, Metaspace, Sequence or null.
class PreTokenizer {
 public:
  PreTokenizer(const nlohmann::json& j, const std::string& where);
  ~PreTokenizer();
  // True when a ByteLevel step maps bytes to its alphabet: the model then sees bytes.
  bool byte_level() const { return byte_level_; }
  void apply(const Span& in, Arena& arena, std::vector<Span>& out) const;

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
  bool byte_level_ = false;
};

// Unicode White_Space (Rust's char::is_whitespace, the regex crate's \s).
bool is_white_space(uint32_t cp);
// The regex crate's \w: letters, marks, decimal digits, connector punctuation, joiners.
bool is_word_char(uint32_t cp);
// Decodes the code point at s[i] (valid UTF-8 assumed) and its length.
uint32_t decode_utf8(std::string_view s, size_t i, size_t* len);
// The code point that ends just before byte `end`.
uint32_t decode_utf8_before(std::string_view s, size_t end, size_t* len);
void append_utf8(std::string& out, uint32_t cp);

// GPT-2's byte-to-character alphabet of ByteLevel.
const std::vector<uint32_t>& byte_level_chars();

}  // namespace polar::hf
