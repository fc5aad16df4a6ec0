// Decoders of tokenizer.json (the library's decoders/ and the ByteLevel/Metaspace decode_chain).
#include "hf_decoder.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "hf_text.h"
#include "polar/common/error.h"

namespace polar::hf {

using nlohmann::json;

std::string utf8_lossy(const std::string& s) {
  static const char* kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size());
  const size_t n = s.size();
  auto at = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  auto cont = [&](size_t i, unsigned char lo, unsigned char hi) {
    return i < n && at(i) >= lo && at(i) <= hi;
  };
  for (size_t i = 0; i < n;) {
    const unsigned char b = at(i);
    size_t width = b < 0x80                   ? 1
                   : (b >= 0xC2 && b <= 0xDF) ? 2
                   : (b >= 0xE0 && b <= 0xEF) ? 3
                   : (b >= 0xF0 && b <= 0xF4) ? 4
                                              : 0;
    size_t good = 0;  // bytes of a valid prefix
    if (width == 1) {
      good = 1;
    } else if (width >= 2) {
      unsigned char lo = 0x80, hi = 0xBF;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
      good = 1;
      if (cont(i + 1, lo, hi)) {
        good = 2;
        for (size_t k = 2; k < width && cont(i + k, 0x80, 0xBF); ++k) good = k + 1;
      }
    }
    if (width != 0 && good == width) {
      out.append(s, i, width);
      i += width;
    } else {
      out += kReplacement;
      i += std::max<size_t>(good, 1);
    }
  }
  return out;
}

namespace {

std::unordered_map<uint32_t, unsigned char> char_to_byte() {
  std::unordered_map<uint32_t, unsigned char> m;
  const auto& chars = byte_level_chars();
  for (int b = 0; b < 256; ++b) m[chars[b]] = static_cast<unsigned char>(b);
  return m;
}

std::vector<uint32_t> code_points(const std::string& s) {
  std::vector<uint32_t> cps;
  for (size_t i = 0; i < s.size();) {
    size_t len = 1;
    cps.push_back(decode_utf8(s, i, &len));
    i += len;
  }
  return cps;
}

std::string from_code_points(const std::vector<uint32_t>& cps, size_t b, size_t e) {
  std::string out;
  for (size_t i = b; i < e; ++i) append_utf8(out, cps[i]);
  return out;
}

}  // namespace

struct Decoder::Step {
  enum Kind { ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace } kind = Fuse;
  std::string replacement;         // Metaspace
  bool prepend_never = false;      // Metaspace
  uint32_t content = 0;            // Strip
  size_t start = 0, stop = 0;      // Strip
  std::unique_ptr<Regex> pattern;  // Replace
  std::string with;                // Replace

  void apply(std::vector<std::string>& tokens) const {
    switch (kind) {
      case ByteLevel:
        return apply_byte_level(tokens);
      case Metaspace:
        return apply_metaspace(tokens);
      case ByteFallback:
        return apply_byte_fallback(tokens);
      case Fuse:
        return apply_fuse(tokens);
      case Strip:
        return apply_strip(tokens);
      case Replace:
        return apply_replace(tokens);
    }
  }

  // GPT-2's byte alphabet back to bytes; all tokens become one (invalid UTF-8 replaced).
  static void apply_byte_level(std::vector<std::string>& tokens) {
    static const auto table = char_to_byte();
    std::string bytes;
    for (const auto& t : tokens) {
      std::string mapped;
      bool ok = true;
      for (size_t i = 0; i < t.size() && ok;) {
        size_t len = 1;
        auto it = table.find(decode_utf8(t, i, &len));
        ok = it != table.end();
        if (ok) mapped += static_cast<char>(it->second);
        i += len;
      }
      bytes += ok ? mapped : t;
    }
    tokens.assign(1, utf8_lossy(bytes));
  }

  void apply_metaspace(std::vector<std::string>& tokens) const {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (size_t p = 0; p < t.size();) {
        if (t.compare(p, replacement.size(), replacement) == 0) {
          if (i != 0 || prepend_never) out += ' ';
          p += replacement.size();
        } else {
          out += t[p++];
        }
      }
      tokens[i] = std::move(out);
    }
  }

  // Runs of "<0xAB>" tokens become their bytes, or one U+FFFD per token when not valid UTF-8.
  static void apply_byte_fallback(std::vector<std::string>& tokens) {
    std::vector<std::string> out;
    std::string pending;
    size_t pending_count = 0;
    auto flush = [&] {
      if (pending_count == 0) return;
      if (utf8_lossy(pending) == pending) {
        out.push_back(pending);
      } else {
        for (size_t k = 0; k < pending_count; ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
      pending_count = 0;
    };
    for (auto& t : tokens) {
      const bool byte_token = t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
                              std::isxdigit(static_cast<unsigned char>(t[3])) &&
                              std::isxdigit(static_cast<unsigned char>(t[4]));
      if (byte_token) {
        pending += static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16));
        ++pending_count;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }

  static void apply_fuse(std::vector<std::string>& tokens) {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, all);
  }

  // Up to `start` leading and `stop` trailing `content` characters removed from each token.
  void apply_strip(std::vector<std::string>& tokens) const {
    for (auto& t : tokens) {
      const auto cps = code_points(t);
      size_t b = 0, e = cps.size();
      for (size_t i = 0; i < start && i < cps.size() && cps[i] == content; ++i) b = i + 1;
      for (size_t i = 0; i < stop && i < cps.size() && cps[cps.size() - 1 - i] == content; ++i)
        e = cps.size() - 1 - i;
      t = b < e ? from_code_points(cps, b, e) : std::string();
    }
  }

  void apply_replace(std::vector<std::string>& tokens) const {
    for (auto& t : tokens) {
      std::vector<std::pair<uint32_t, uint32_t>> m;
      pattern->find_all(t, m);
      if (m.empty()) continue;
      std::string out;
      size_t prev = 0;
      for (const auto& [b, e] : m) {
        out.append(t, prev, b - prev);
        out += with;
        prev = e;
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    }
  }
};

Decoder::~Decoder() = default;

Decoder::Decoder(const json& j, const std::string& where) {
  if (j.is_null()) return;
  none_ = false;
  POLAR_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(), where,
              ": expected an object with a \"type\"");
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    POLAR_CHECK(j.contains("decoders") && j["decoders"].is_array(), where,
                ".decoders: expected an array");
    for (size_t i = 0; i < j["decoders"].size(); ++i) {
      Decoder inner(j["decoders"][i], where + ".decoders[" + std::to_string(i) + "]");
      for (auto& s : inner.steps_) steps_.push_back(std::move(s));
    }
    return;
  }
  auto step = std::make_unique<Step>();
  if (type == "ByteLevel") {
    step->kind = Step::ByteLevel;
  } else if (type == "Metaspace") {
    step->kind = Step::Metaspace;
    POLAR_CHECK(j.contains("replacement") && j["replacement"].is_string(), where,
                ".replacement: expected a string");
    step->replacement = j["replacement"].get<std::string>();
    const std::string scheme = j.value("prepend_scheme", std::string("always"));
    step->prepend_never = scheme == "never" ||
                          (j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean() &&
                           !j["add_prefix_space"].get<bool>());
  } else if (type == "ByteFallback") {
    step->kind = Step::ByteFallback;
  } else if (type == "Fuse") {
    step->kind = Step::Fuse;
  } else if (type == "Strip") {
    step->kind = Step::Strip;
    POLAR_CHECK(j.contains("content") && j["content"].is_string(), where,
                ".content: expected a one-character string");
    const std::string c = j["content"].get<std::string>();
    size_t len = 0;
    POLAR_CHECK(!c.empty(), where, ".content: expected a one-character string");
    step->content = decode_utf8(c, 0, &len);
    step->start = j.value("start", size_t{0});
    step->stop = j.value("stop", size_t{0});
  } else if (type == "Replace") {
    step->kind = Step::Replace;
    POLAR_CHECK(j.contains("pattern") && j["pattern"].is_object(), where,
                ".pattern: expected {\"String\": ...} or {\"Regex\": ...}");
    const json& p = j["pattern"];
    std::string pattern;
    if (p.contains("String") && p["String"].is_string()) {
      pattern = regex_escape(p["String"].get<std::string>());
    } else if (p.contains("Regex") && p["Regex"].is_string()) {
      pattern = p["Regex"].get<std::string>();
    } else {
      throw Error(where + ".pattern: expected {\"String\": ...} or {\"Regex\": ...}");
    }
    step->pattern = std::make_unique<Regex>(pattern, where + ".pattern");
    POLAR_CHECK(j.contains("content") && j["content"].is_string(), where,
                ".content: expected a string");
    step->with = j["content"].get<std::string>();
  } else {
    throw Error(where + ": decoder \"" + type +
                "\" is not supported (supported: ByteLevel, Metaspace, ByteFallback, Fuse, "
                "Strip, Replace, Sequence)");
  }
  steps_.push_back(std::move(step));
}

std::string Decoder::decode(std::vector<std::string> tokens) const {
  std::string out;
  if (none_) {
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  for (const auto& s : steps_) s->apply(tokens);
  for (const auto& t : tokens) out += t;
  return out;
}

}  // namespace polar::hf
