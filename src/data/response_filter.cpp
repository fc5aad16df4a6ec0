// The response filter; see data/response_filter.h.
#include "polar/data/response_filter.h"

#include <nlohmann/json.hpp>

namespace polar {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string trim_right(std::string s) {
  while (!s.empty() && is_space(s.back())) s.pop_back();
  return s;
}

bool is_utf8_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// The end of the last sentence: after ". ", "! ", "? " (or at the very end), after a full-width
// 。！？, or at a line break; closing quotes and brackets right after the mark stay. 0 when none.
size_t last_sentence_end(const std::string& t) {
  static const char* const kWide[] = {"\xE3\x80\x82", "\xEF\xBC\x81", "\xEF\xBC\x9F"};  // 。！？
  for (size_t i = t.size(); i-- > 0;) {
    const char c = t[i];
    if (c == '\n') return i;  // the line before it is complete
    size_t end = std::string::npos;
    if (c == '.' || c == '!' || c == '?') {
      end = i + 1;
    } else {
      for (const char* w : kWide) {
        if (i >= 2 && t.compare(i - 2, 3, w) == 0) end = i + 1;
      }
    }
    if (end == std::string::npos) continue;
    while (end < t.size() && (t[end] == '"' || t[end] == '\'' || t[end] == ')' || t[end] == ']'))
      ++end;
    // "3.5" or "e.g" is no sentence end: an ASCII mark must be followed by space or the end.
    if (c == '.' || c == '!' || c == '?') {
      if (end < t.size() && !is_space(t[end])) continue;
    }
    return end;
  }
  return 0;
}

}  // namespace

void ResponseFilterCounts::add(const ResponseFilterCounts& o) {
  seen += o.seen;
  kept += o.kept;
  aborted_dropped += o.aborted_dropped;
  loop_truncated += o.loop_truncated;
  unfinished_cut += o.unfinished_cut;
  unfinished_dropped += o.unfinished_dropped;
  empty_dropped += o.empty_dropped;
}

void ResponseFilterCounts::add_dropped(const std::string& rule) {
  ++seen;
  if (rule == "aborted") {
    ++aborted_dropped;
  } else if (rule == "unfinished") {
    ++unfinished_dropped;
  } else {
    ++empty_dropped;
  }
}

nlohmann::json ResponseFilterCounts::to_json() const {
  return {{"seen", seen},
          {"kept", kept},
          {"aborted_dropped", aborted_dropped},
          {"loop_truncated", loop_truncated},
          {"unfinished_cut", unfinished_cut},
          {"unfinished_dropped", unfinished_dropped},
          {"empty_dropped", empty_dropped}};
}

size_t loop_cut(const std::string& t, const ResponseFilterOptions& o) {
  const size_t n = t.size();
  size_t best_span = 0, best_period = 0;
  for (size_t p = 1; p <= static_cast<size_t>(o.max_loop_period) && 2 * p <= n; ++p) {
    // run: the longest tail in which every byte equals the one p before it.
    size_t run = 0;
    while (run + p < n && t[n - 1 - run] == t[n - 1 - run - p]) ++run;
    const size_t span = run + p;  // the first copy plus everything repeating it
    if (span / p < static_cast<size_t>(o.min_loop_repeats) ||
        span < static_cast<size_t>(o.min_loop_bytes))
      continue;
    if (span > best_span) best_span = span, best_period = p;
  }
  if (best_span == 0) return std::string::npos;
  size_t cut = n - best_span + best_period;  // after the first copy
  while (cut > 0 && cut < n && is_utf8_continuation(t[cut])) --cut;
  return cut;
}

FilteredResponse filter_response(const std::string& text, const std::string& finish,
                                 const ResponseFilterOptions& o, ResponseFilterCounts& counts) {
  ++counts.seen;
  FilteredResponse r;
  r.text = text;
  if (!o.enabled) {
    ++counts.kept;
    return r;
  }
  auto drop = [&](const char* rule, int64_t& counter) {
    ++counter;
    r.keep = false;
    r.dropped = rule;
    return r;
  };
  if (finish == "abort" || finish == "error" || finish == "cancelled")
    return drop("aborted", counts.aborted_dropped);
  if (const size_t cut = loop_cut(r.text, o); cut != std::string::npos) {
    r.text = trim_right(r.text.substr(0, cut));
    r.loop_truncated = true;
    ++counts.loop_truncated;
  }
  if (finish == "length") {
    const size_t end = o.drop_unfinished ? 0 : last_sentence_end(r.text);
    if (end == 0) return drop("unfinished", counts.unfinished_dropped);
    if (end < trim_right(r.text).size()) {
      r.text.resize(end);
      r.unfinished_cut = true;
      ++counts.unfinished_cut;
    }
  }
  if (r.text.find_first_not_of(" \t\r\n") == std::string::npos)
    return drop("empty", counts.empty_dropped);
  ++counts.kept;
  return r;
}

}  // namespace polar
