// Prompts from a JSONL file or as random token prefixes of corpus texts; see
// sample/prompts.h.
#include "polar/sample/prompts.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "polar/common/error.h"
#include "polar/data/builder.h"
#include "polar/data/records.h"

namespace polar::sample {

using nlohmann::json;

namespace {

// Calls fn(line_no, line) for every non-blank line; checks UTF-8.
template <typename Fn>
void for_each_line(const std::string& path, Fn fn) {
  std::ifstream in(path, std::ios::binary);
  POLAR_CHECK(in.good(), path, ": cannot open file");
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t\f\v") == std::string::npos) continue;
    size_t bad = 0;
    POLAR_CHECK(is_valid_utf8(line, &bad), path, ":", line_no, ": invalid UTF-8 at byte ", bad + 1);
    fn(line_no, line);
  }
}

json parse_object(const std::string& line, const std::string& where) {
  json obj = json::parse(line, nullptr, /*allow_exceptions=*/false);
  POLAR_CHECK(obj.is_object(), where, ": expected a JSON object");
  return obj;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<Prompt> read_prompts(const std::string& path) {
  std::vector<Prompt> out;
  for_each_line(path, [&](int64_t line_no, const std::string& line) {
    const std::string where = path + ":" + std::to_string(line_no);
    const json obj = parse_object(line, where);
    POLAR_CHECK(obj.contains("prompt"), where,
                ": missing field \"prompt\" (expected a string or a messages list)");
    Prompt p;
    p.text = render_text_field(obj["prompt"], where + ": \"prompt\"");
    if (obj.contains("category") && !obj["category"].is_null()) {
      POLAR_CHECK(obj["category"].is_string(), where, ": \"category\": expected a string");
      p.category = obj["category"].get<std::string>();
    }
    out.push_back(std::move(p));
  });
  POLAR_CHECK(!out.empty(), path, ": no prompts");
  return out;
}

std::vector<Prompt> corpus_prefix_prompts(const std::string& path, const Tokenizer& tokenizer,
                                          const CorpusPrefixOptions& options) {
  POLAR_CHECK(options.max_prefix_tokens >= 1, "--prefix-tokens: expected an integer >= 1, got ",
              options.max_prefix_tokens);
  const bool jsonl = ends_with(path, ".jsonl");
  std::vector<Prompt> out;
  for_each_line(path, [&](int64_t line_no, const std::string& line) {
    const std::string where = path + ":" + std::to_string(line_no);
    std::string text = line;
    if (jsonl) {
      const json obj = parse_object(line, where);
      POLAR_CHECK(obj.contains("text"), where, ": missing field \"text\"");
      text = render_text_field(obj["text"], where + ": \"text\"");
    }
    const auto ids = tokenizer.encode(text);
    if (ids.empty()) return;
    std::mt19937_64 rng(options.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(line_no));
    const int64_t longest =
        std::min<int64_t>(options.max_prefix_tokens, static_cast<int64_t>(ids.size()));
    const int64_t n = std::uniform_int_distribution<int64_t>(1, longest)(rng);
    Prompt p;
    p.text = tokenizer.decode(std::vector<int32_t>(ids.begin(), ids.begin() + n));
    p.category = options.category;
    p.instruction = false;
    if (!p.text.empty()) out.push_back(std::move(p));
  });
  POLAR_CHECK(!out.empty(), path, ": no texts to take prefixes of");
  return out;
}

std::vector<Prompt> with_instruction_share(const std::vector<Prompt>& prompts, double share,
                                           uint64_t seed) {
  POLAR_CHECK(share >= 0 && share < 1, "--instruction-share: expected a number in [0, 1), got ",
              share);
  std::vector<std::pair<uint64_t, size_t>> instructions;  // (seeded hash, index)
  int64_t prefixes = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].instruction) {
      instructions.emplace_back(prompt_hash(prompts[i].text) ^ (seed * 0x9E3779B97F4A7C15ULL), i);
    } else {
      ++prefixes;
    }
  }
  const auto keep = std::min<size_t>(
      instructions.size(),
      static_cast<size_t>(std::llround(share / (1 - share) * static_cast<double>(prefixes))));
  std::sort(instructions.begin(), instructions.end());
  std::vector<bool> kept(prompts.size(), true);
  for (size_t k = keep; k < instructions.size(); ++k) kept[instructions[k].second] = false;
  std::vector<Prompt> out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (kept[i]) out.push_back(prompts[i]);
  }
  return out;
}

}  // namespace polar::sample
