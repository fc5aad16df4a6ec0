// The POLAR template in token space, with truncation that never decodes and re-encodes text.
#include "polar/tokenizer/template.h"

#include <algorithm>
#include <cstdint>
#include <string_view>

#include "polar/common/error.h"

namespace polar {

TemplateKind parse_template_kind(const std::string& name) {
  if (name == "pretrain") return TemplateKind::Pretrain;
  if (name == "finetune") return TemplateKind::Finetune;
  throw Error("template: expected \"pretrain\" or \"finetune\", got \"" + name + "\"");
}

const char* template_kind_name(TemplateKind kind) {
  return kind == TemplateKind::Pretrain ? "pretrain" : "finetune";
}

std::string_view template_separator(TemplateKind kind) {
  return kind == TemplateKind::Finetune ? "\n" : "";
}

namespace {

// The tokens of one run "prompt SEP body", by field.
struct RunTokens {
  std::vector<int32_t> prompt, sep, body;
};

// Encodes the run as one string and gives each token to the field in which it ends. `lead` is the
// text before the run in the joined string ("" for the first run, the <|reward|> piece for the
// second): it is encoded too and its tokens dropped, so a tokenizer that treats the start of the
// string differently (Metaspace's prepend_scheme "first", a separator with rstrip) gives the run
// the ids it has inside the joined string.
RunTokens encode_run(const Tokenizer& tok, const std::string& lead, const std::string& prompt,
                     std::string_view sep, const std::string& body) {
  std::string text;
  text.reserve(lead.size() + prompt.size() + sep.size() + body.size());
  text.append(lead).append(prompt).append(sep).append(body);
  std::vector<int32_t> ids;
  std::vector<size_t> ends;
  tok.encode_split_specials(text, ids, ends);
  RunTokens out;
  const size_t prompt_end = lead.size() + prompt.size(), sep_end = prompt_end + sep.size();
  size_t i = 0;
  if (!lead.empty()) {
    POLAR_CHECK(!ids.empty() && ids[0] == tok.special().reward_sep && ends[0] >= lead.size(),
                tok.source(), ": the <|reward|> piece does not encode to its own id");
    i = 1;
  }
  for (; i < ids.size(); ++i) {
    auto& field = ends[i] <= prompt_end ? out.prompt : ends[i] <= sep_end ? out.sep : out.body;
    field.push_back(ids[i]);
  }
  return out;
}

size_t minus(size_t a, size_t b) { return a > b ? a - b : 0; }

template <typename T>
void append(std::vector<T>& dst, const std::vector<T>& src, size_t from, size_t count) {
  const size_t begin = std::min(from, src.size()), end = std::min(src.size(), begin + count);
  dst.insert(dst.end(), src.begin() + static_cast<std::ptrdiff_t>(begin),
             src.begin() + static_cast<std::ptrdiff_t>(end));
}

// bos first run <|reward|> second run <reward token>, truncated to the limits. The prompt's copies
// lose the same number of tokens from the left.
std::optional<EncodedGroup> assemble(const Tokenizer& tok, const RunTokens& first,
                                     const std::vector<RunTokens>& second,
                                     const TemplateLimits& limits) {
  POLAR_CHECK(!second.empty(), "encode_group: a group needs at least one candidate");
  POLAR_CHECK(limits.max_length > 0, "max_length must be positive, got ", limits.max_length);
  POLAR_CHECK(limits.max_response_length > 0, "max_response_length must be positive, got ",
              limits.max_response_length);
  const SpecialTokens& sp = tok.special();
  POLAR_CHECK(sp.reward >= 0 && sp.reward_sep >= 0, tok.source(),
              ": a language model's tokenizer without POLAR's <|reward|> and reward tokens cannot "
              "encode reward-model inputs; give a POLAR tokenizer");
  const auto response_len = static_cast<size_t>(limits.max_response_length);
  const size_t ref_len = std::min(first.body.size(), response_len);
  size_t max_prompt = first.prompt.size();
  for (const auto& run : second) max_prompt = std::max(max_prompt, run.prompt.size());
  // Sequence i's length when n prompt tokens are cut from each copy.
  const size_t bos = sp.bos >= 0 ? 1 : 0;  // a tokenizer.json may put nothing first
  auto fits = [&](size_t n) {
    const size_t head = bos + minus(first.prompt.size(), n) + first.sep.size() + ref_len + 1;
    for (const auto& run : second) {
      const size_t len = head + minus(run.prompt.size(), n) + run.sep.size() +
                         std::min(run.body.size(), response_len) + 1;
      if (len > static_cast<size_t>(limits.max_length)) return false;
    }
    return true;
  };
  if (!fits(max_prompt)) return std::nullopt;
  size_t lo = 0, hi = max_prompt;  // fits(hi); find the smallest cut that fits
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (fits(mid)) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const size_t cut = lo;

  EncodedGroup out;
  out.prompt_tokens_cut = static_cast<int64_t>(std::min(cut, first.prompt.size()));
  out.response_tokens_cut = static_cast<int64_t>(first.body.size() - ref_len);
  auto& p = out.prefix;
  if (bos) p.push_back(sp.bos);
  append(p, first.prompt, cut, first.prompt.size());
  append(p, first.sep, 0, first.sep.size());
  append(p, first.body, 0, ref_len);
  p.push_back(sp.reward_sep);
  std::vector<std::vector<int32_t>> tails;
  size_t shared = SIZE_MAX;  // tokens every tail shares, within the prompt and SEP
  for (const auto& run : second) {
    std::vector<int32_t> t;
    append(t, run.prompt, cut, run.prompt.size());
    append(t, run.sep, 0, run.sep.size());
    shared = std::min(shared, t.size());
    const size_t len = std::min(run.body.size(), response_len);
    out.response_tokens_cut += static_cast<int64_t>(run.body.size() - len);
    append(t, run.body, 0, len);
    t.push_back(sp.reward);
    tails.push_back(std::move(t));
  }
  for (size_t k = 0; k < shared; ++k) {
    for (const auto& t : tails) {
      if (t[k] != tails[0][k]) shared = k;
    }
  }
  p.insert(p.end(), tails[0].begin(), tails[0].begin() + static_cast<std::ptrdiff_t>(shared));
  for (auto& t : tails)
    out.candidates.emplace_back(t.begin() + static_cast<std::ptrdiff_t>(shared), t.end());
  return out;
}

}  // namespace

std::optional<EncodedGroup> encode_group(const Tokenizer& tok, TemplateKind kind,
                                         const std::vector<int32_t>& prompt,
                                         const std::vector<int32_t>& reference,
                                         const std::vector<std::vector<int32_t>>& candidates,
                                         const TemplateLimits& limits) {
  const std::vector<int32_t> sep =
      kind == TemplateKind::Finetune ? tok.encode("\n") : std::vector<int32_t>{};
  const RunTokens first{prompt, sep, reference};
  std::vector<RunTokens> second;
  second.reserve(candidates.size());
  for (const auto& c : candidates) second.push_back(RunTokens{prompt, sep, c});
  return assemble(tok, first, second, limits);
}

std::optional<EncodedGroup> encode_group_text(const Tokenizer& tok, TemplateKind kind,
                                              const std::string& prompt,
                                              const std::string& reference,
                                              const std::vector<std::string>& candidates,
                                              const TemplateLimits& limits) {
  const std::string_view sep = template_separator(kind);
  const RunTokens first = encode_run(tok, "", prompt, sep, reference);
  const std::string lead = tok.id_to_piece(tok.special().reward_sep);
  std::vector<RunTokens> second;
  second.reserve(candidates.size());
  for (const auto& c : candidates) second.push_back(encode_run(tok, lead, prompt, sep, c));
  return assemble(tok, first, second, limits);
}

}  // namespace polar
