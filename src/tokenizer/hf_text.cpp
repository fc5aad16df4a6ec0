// Normalizers and pre-tokenizers of tokenizer.json, with the byte alignment polar's ids carry.
#include "hf_text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "polar/common/error.h"

namespace polar::hf {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// UTF-8 and character classes

uint32_t decode_utf8(std::string_view s, size_t i, size_t* len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    *len = 1;
    return b0;
  }
  auto cont = [&](size_t k) {
    return static_cast<uint32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F);
  };
  if (b0 < 0xE0) {
    *len = 2;
    return (static_cast<uint32_t>(b0 & 0x1F) << 6) | cont(1);
  }
  if (b0 < 0xF0) {
    *len = 3;
    return (static_cast<uint32_t>(b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2);
  }
  *len = 4;
  return (static_cast<uint32_t>(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
}

uint32_t decode_utf8_before(std::string_view s, size_t end, size_t* len) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  const uint32_t cp = decode_utf8(s, i, len);
  *len = end - i;
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

bool is_word_char(uint32_t cp) {
  if (cp < 0x80) return std::isalnum(static_cast<int>(cp)) != 0 || cp == '_';
  if (cp == 0x200C || cp == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

const std::vector<uint32_t>& byte_level_chars() {
  static const std::vector<uint32_t> table = [] {
    std::vector<uint32_t> t(256, 0);
    std::vector<bool> direct(256, false);
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    uint32_t n = 0;
    for (int b = 0; b < 256; ++b) t[b] = direct[b] ? static_cast<uint32_t>(b) : 256 + n++;
    return t;
  }();
  return table;
}

Span Span::sub(size_t from, size_t to) const {
  Span s;
  s.text = text.substr(from, to - from);
  s.ends = ends ? ends + from : nullptr;
  s.base = ends ? 0 : base + static_cast<uint32_t>(from);
  s.start = from == 0 ? start : end_at(from - 1);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Regex (PCRE2)

namespace {

constexpr const char* kWhiteSpaceClass =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

std::string translate_pattern(const std::string& p, const std::string& where) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[++i];
      if (n == 's') {
        out += in_class ? std::string(kWhiteSpaceClass) : "[" + std::string(kWhiteSpaceClass) + "]";
      } else if (n == 'S') {
        POLAR_CHECK(!in_class, where, ": \\S inside a character class is not supported");
        out += "[^" + std::string(kWhiteSpaceClass) + "]";
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // a literal ] first
      continue;
    }
    if (in_class && c == '[') {
      POLAR_CHECK(i + 1 < p.size() && p[i + 1] == ':', where,
                  ": nested character classes are not supported");
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
    if (context && stack) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
  }
};

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

std::string regex_escape(const std::string& literal) {
  std::string out;
  for (char c : literal) {
    if (std::isalnum(static_cast<unsigned char>(c)) || static_cast<unsigned char>(c) >= 0x80) {
      out += c;
    } else {
      char buf[16];
      std::snprintf(buf, sizeof buf, "\\x{%X}", static_cast<unsigned char>(c));
      out += buf;
    }
  }
  return out;
}

Regex::Regex(const std::string& onig_pattern, const std::string& where) : where_(where) {
  const std::string p = translate_pattern(onig_pattern, where);
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  POLAR_CHECK(code != nullptr, where, ": pattern ", json(onig_pattern).dump(),
              " does not compile: ", pcre2_message(err), " at ", offset);
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // without a JIT the interpreter runs it
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void Regex::find_all(std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& out) const {
  thread_local MatchScratch scratch;
  auto* code = static_cast<pcre2_code*>(code_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    // The text was checked to be UTF-8 when the encode call began.
    const int rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, scratch.data,
                               scratch.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    POLAR_CHECK(rc >= 0, where_, ": pattern match failed: ", pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.data);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(static_cast<uint32_t>(b), static_cast<uint32_t>(e));
      pos = e;
    } else {  // an empty match: step over one character
      if (b >= text.size()) break;
      size_t len = 1;
      decode_utf8(text, b, &len);
      pos = b + len;
    }
  }
}

SplitBehavior parse_split_behavior(const json& j, const std::string& where) {
  const std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  throw Error(where + ": unsupported split behavior " + j.dump());
}

void split_span(const Span& span, const std::vector<std::pair<uint32_t, uint32_t>>& matches,
                bool invert, SplitBehavior behavior, std::vector<Span>& out) {
  struct Piece {
    uint32_t b, e;
    bool match;
  };
  std::vector<Piece> pieces;
  pieces.reserve(matches.size() * 2 + 1);
  uint32_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) pieces.push_back({prev, b, invert});
    pieces.push_back({b, e, !invert});
    prev = e;
  }
  const auto n = static_cast<uint32_t>(span.text.size());
  if (prev != n) pieces.push_back({prev, n, invert});

  std::vector<std::pair<uint32_t, uint32_t>> keep;
  keep.reserve(pieces.size());
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const auto& p : pieces) keep.emplace_back(p.b, p.e);
      break;
    case SplitBehavior::Removed:
      for (const auto& p : pieces)
        if (!p.match) keep.emplace_back(p.b, p.e);
      break;
    case SplitBehavior::Contiguous: {
      bool previous = false;
      for (const auto& p : pieces) {
        if (p.match == previous && !keep.empty()) {
          keep.back().second = p.e;
        } else {
          keep.emplace_back(p.b, p.e);
        }
        previous = p.match;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      bool previous = false;
      for (const auto& p : pieces) {
        if (p.match && !previous && !keep.empty()) {
          keep.back().second = p.e;
        } else {
          keep.emplace_back(p.b, p.e);
        }
        previous = p.match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool previous = false;
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        if (it->match && !previous && !keep.empty()) {
          keep.back().first = it->b;
        } else {
          keep.emplace_back(it->b, it->e);
        }
        previous = it->match;
      }
      std::reverse(keep.begin(), keep.end());
      break;
    }
  }
  for (const auto& [b, e] : keep)
    if (e > b) out.push_back(span.sub(b, e));
}

// ---------------------------------------------------------------------------------------------
// Normalizers

namespace {

std::string type_of(const json& j, const std::string& where) {
  POLAR_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(), where,
              ": expected an object with a \"type\"");
  return j["type"].get<std::string>();
}

std::string string_at(const json& j, const char* key, const std::string& where) {
  POLAR_CHECK(j.contains(key) && j[key].is_string(), where, ".", key, ": expected a string");
  return j[key].get<std::string>();
}

bool bool_at(const json& j, const char* key, bool fallback, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  POLAR_CHECK(j[key].is_boolean(), where, ".", key, ": expected true or false");
  return j[key].get<bool>();
}

// A Split/Replace pattern: {"String": "..."} or {"Regex": "..."}.
std::string pattern_at(const json& j, const std::string& where) {
  POLAR_CHECK(j.contains("pattern") && j["pattern"].is_object(), where,
              ".pattern: expected {\"String\": ...} or {\"Regex\": ...}");
  const json& p = j["pattern"];
  if (p.contains("String") && p["String"].is_string())
    return regex_escape(p["String"].get<std::string>());
  if (p.contains("Regex") && p["Regex"].is_string()) return p["Regex"].get<std::string>();
  throw Error(where + ".pattern: expected {\"String\": ...} or {\"Regex\": ...}");
}

OwnedText& new_text(Arena& arena, uint32_t start) {
  arena.push_back(std::make_unique<OwnedText>());
  arena.back()->start = start;
  return *arena.back();
}

void append_span(OwnedText& t, const Span& s, size_t from, size_t to) {
  t.text.append(s.text.substr(from, to - from));
  for (size_t i = from; i < to; ++i) t.ends.push_back(s.end_at(i));
}

void append_inserted(OwnedText& t, const std::string& bytes, uint32_t end) {
  t.text += bytes;
  t.ends.insert(t.ends.end(), bytes.size(), end);
}

}  // namespace

struct Normalizer::Step {
  enum Kind { Unicode, Prepend, Replace } kind = Unicode;
  int utf8proc_options = 0;
  std::string text;  // Prepend: the prefix; Replace: the content
  std::unique_ptr<Regex> pattern;

  Span apply(const Span& in, Arena& arena) const {
    if (in.text.empty()) return in;
    if (kind == Prepend) {
      OwnedText& t = new_text(arena, in.start);
      append_inserted(t, text, in.start);
      append_span(t, in, 0, in.text.size());
      return t.span();
    }
    if (kind == Replace) {
      std::vector<std::pair<uint32_t, uint32_t>> m;
      pattern->find_all(in.text, m);
      if (m.empty()) return in;
      OwnedText& t = new_text(arena, in.start);
      size_t prev = 0;
      for (const auto& [b, e] : m) {
        append_span(t, in, prev, b);
        append_inserted(t, text, in.end_at(e - 1));
        prev = e;
      }
      append_span(t, in, prev, in.text.size());
      return t.span();
    }
    bool ascii = true;
    for (char c : in.text) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
    if (ascii) return in;
    // Normalised chunk by chunk, each an ASCII character and the non-ASCII run after it: an
    // ASCII character never composes with what precedes it, so this equals normalising the
    // whole, and every output byte maps to the end of its chunk.
    OwnedText& t = new_text(arena, in.start);
    size_t i = 0;
    while (i < in.text.size()) {
      size_t j = i + 1;
      while (j < in.text.size() && static_cast<unsigned char>(in.text[j]) >= 0x80) ++j;
      if (j == i + 1 && static_cast<unsigned char>(in.text[i]) < 0x80) {
        t.text += in.text[i];
        t.ends.push_back(in.end_at(i));
      } else {
        utf8proc_uint8_t* dst = nullptr;
        const utf8proc_ssize_t n =
            utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(in.text.data() + i),
                         static_cast<utf8proc_ssize_t>(j - i), &dst,
                         static_cast<utf8proc_option_t>(utf8proc_options));
        POLAR_CHECK(n >= 0, "normalizer: ", utf8proc_errmsg(n));
        append_inserted(t, std::string(reinterpret_cast<const char*>(dst), static_cast<size_t>(n)),
                        in.end_at(j - 1));
        std::free(dst);
      }
      i = j;
    }
    if (t.text == in.text) {
      arena.pop_back();
      return in;
    }
    return t.span();
  }
};

Normalizer::~Normalizer() = default;

Normalizer::Normalizer(const json& j, const std::string& where) {
  if (j.is_null()) return;
  const std::string type = type_of(j, where);
  if (type == "Sequence") {
    POLAR_CHECK(j.contains("normalizers") && j["normalizers"].is_array(), where,
                ".normalizers: expected an array");
    for (size_t i = 0; i < j["normalizers"].size(); ++i) {
      Normalizer inner(j["normalizers"][i], where + ".normalizers[" + std::to_string(i) + "]");
      for (auto& s : inner.steps_) steps_.push_back(std::move(s));
    }
    return;
  }
  auto step = std::make_unique<Step>();
  if (type == "NFC" || type == "NFKC" || type == "NFD" || type == "NFKD") {
    step->kind = Step::Unicode;
    int o = UTF8PROC_STABLE;
    o |= (type == "NFC" || type == "NFKC") ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
    if (type == "NFKC" || type == "NFKD") o |= UTF8PROC_COMPAT;
    step->utf8proc_options = o;
  } else if (type == "Prepend") {
    step->kind = Step::Prepend;
    step->text = string_at(j, "prepend", where);
  } else if (type == "Replace") {
    step->kind = Step::Replace;
    step->text = string_at(j, "content", where);
    step->pattern = std::make_unique<Regex>(pattern_at(j, where), where + ".pattern");
  } else {
    throw Error(where + ": normalizer \"" + type +
                "\" is not supported (supported: NFC, NFKC, NFD, NFKD, Prepend, Replace, "
                "Sequence)");
  }
  steps_.push_back(std::move(step));
}

Span Normalizer::apply(const Span& in, Arena& arena) const {
  Span s = in;
  for (const auto& step : steps_) s = step->apply(s, arena);
  return s;
}

std::string Normalizer::apply(const std::string& text) const {
  Arena arena;
  return std::string(apply(Span{text, nullptr, 0, 0}, arena).text);
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers

namespace {
constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
}

struct PreTokenizer::Step {
  enum Kind { Split, ByteLevel, Metaspace } kind = Split;
  std::unique_ptr<Regex> pattern;  // Split; ByteLevel with use_regex
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel
  std::string replacement;        // Metaspace
  enum Prepend { Always, First, Never } prepend = Always;
  bool split = true;

  void apply(const Span& in, Arena& arena, std::vector<Span>& out) const {
    std::vector<std::pair<uint32_t, uint32_t>> m;
    if (kind == Split) {
      pattern->find_all(in.text, m);
      split_span(in, m, invert, behavior, out);
      return;
    }
    if (kind == ByteLevel) {
      Span s = in;
      if (add_prefix_space && (s.text.empty() || s.text[0] != ' ')) {
        OwnedText& t = new_text(arena, in.start);
        append_inserted(t, " ", in.start);
        append_span(t, in, 0, in.text.size());
        s = t.span();
      }
      if (!pattern) {
        if (!s.text.empty()) out.push_back(s);
        return;
      }
      pattern->find_all(s.text, m);
      split_span(s, m, false, SplitBehavior::Isolated, out);
      return;
    }
    // Metaspace: spaces become the replacement, which may be prepended, then split before it.
    OwnedText& t = new_text(arena, in.start);
    const bool starts =
        in.text.substr(0, 1) == " " || in.text.substr(0, replacement.size()) == replacement;
    if (!starts && (prepend == Always || (prepend == First && in.start == 0)))
      append_inserted(t, replacement, in.start);
    for (size_t i = 0; i < in.text.size(); ++i) {
      if (in.text[i] == ' ') {
        append_inserted(t, replacement, in.end_at(i));
      } else {
        t.text += in.text[i];
        t.ends.push_back(in.end_at(i));
      }
    }
    const Span s = t.span();
    if (!split) {
      if (!s.text.empty()) out.push_back(s);
      return;
    }
    for (size_t p = s.text.find(replacement); p != std::string::npos;
         p = s.text.find(replacement, p + replacement.size()))
      m.emplace_back(static_cast<uint32_t>(p), static_cast<uint32_t>(p + replacement.size()));
    split_span(s, m, false, SplitBehavior::MergedWithNext, out);
  }
};

PreTokenizer::~PreTokenizer() = default;

PreTokenizer::PreTokenizer(const json& j, const std::string& where) {
  if (j.is_null()) return;
  const std::string type = type_of(j, where);
  POLAR_CHECK(!byte_level_, where, ": a pre-tokenizer after ByteLevel is not supported");
  if (type == "Sequence") {
    POLAR_CHECK(j.contains("pretokenizers") && j["pretokenizers"].is_array(), where,
                ".pretokenizers: expected an array");
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i) {
      const std::string w = where + ".pretokenizers[" + std::to_string(i) + "]";
      POLAR_CHECK(!byte_level_, w, ": a pre-tokenizer after ByteLevel is not supported");
      PreTokenizer inner(j["pretokenizers"][i], w);
      for (auto& s : inner.steps_) steps_.push_back(std::move(s));
      byte_level_ = byte_level_ || inner.byte_level_;
    }
    return;
  }
  auto step = std::make_unique<Step>();
  if (type == "Split") {
    step->kind = Step::Split;
    step->pattern = std::make_unique<Regex>(pattern_at(j, where), where + ".pattern");
    step->behavior = parse_split_behavior(j.value("behavior", json()), where + ".behavior");
    step->invert = bool_at(j, "invert", false, where);
  } else if (type == "ByteLevel") {
    step->kind = Step::ByteLevel;
    step->add_prefix_space = bool_at(j, "add_prefix_space", true, where);
    if (bool_at(j, "use_regex", true, where))
      step->pattern = std::make_unique<Regex>(kGpt2Pattern, where + " (GPT-2 pattern)");
    byte_level_ = true;
  } else if (type == "Metaspace") {
    step->kind = Step::Metaspace;
    step->replacement = string_at(j, "replacement", where);
    const std::string scheme = j.value("prepend_scheme", std::string("always"));
    if (scheme == "always") {
      step->prepend = Step::Always;
    } else if (scheme == "first") {
      step->prepend = Step::First;
    } else if (scheme == "never") {
      step->prepend = Step::Never;
    } else {
      throw Error(where + ".prepend_scheme: expected \"first\", \"always\" or \"never\", got \"" +
                  scheme + "\"");
    }
    if (j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean() &&
        !j["add_prefix_space"].get<bool>())
      step->prepend = Step::Never;
    step->split = bool_at(j, "split", true, where);
  } else {
    throw Error(where + ": pre-tokenizer \"" + type +
                "\" is not supported (supported: Split, ByteLevel, Metaspace, Sequence)");
  }
  steps_.push_back(std::move(step));
}

void PreTokenizer::apply(const Span& in, Arena& arena, std::vector<Span>& out) const {
  if (steps_.empty()) {
    if (!in.text.empty()) out.push_back(in);
    return;
  }
  std::vector<Span> cur{in}, next;
  for (size_t k = 0; k < steps_.size(); ++k) {
    std::vector<Span>& dst = k + 1 == steps_.size() ? out : next;
    if (&dst == &next) next.clear();
    for (const Span& s : cur) steps_[k]->apply(s, arena, dst);
    if (&dst == &next) cur.swap(next);
  }
}

}  // namespace polar::hf
