// The POLAR template in token space, with truncation that never decodes and re-encodes text.
#include "polar/tokenizer/template.h"

#include <algorithm>

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

std::optional<EncodedGroup> encode_group(const Tokenizer& tok, TemplateKind kind,
                                         const std::vector<int32_t>& prompt,
                                         const std::vector<int32_t>& reference,
                                         const std::vector<std::vector<int32_t>>& candidates,
                                         const TemplateLimits& limits) {
  POLAR_CHECK(!candidates.empty(), "encode_group: a group needs at least one candidate");
  POLAR_CHECK(limits.max_length > 0, "max_length must be positive, got ", limits.max_length);
  POLAR_CHECK(limits.max_response_length > 0, "max_response_length must be positive, got ",
              limits.max_response_length);
  const SpecialTokens& sp = tok.special();
  const std::vector<int32_t> sep = kind == TemplateKind::Finetune ? tok.encode("\n") : std::vector<int32_t>{};
  const auto response_len = static_cast<size_t>(limits.max_response_length);

  EncodedGroup out;
  const size_t ref_len = std::min(reference.size(), response_len);
  out.response_tokens_cut += static_cast<int64_t>(reference.size() - ref_len);
  int64_t longest_candidate = 0;  // including the reward token
  out.candidates.reserve(candidates.size());
  for (const auto& cand : candidates) {
    const size_t len = std::min(cand.size(), response_len);
    out.response_tokens_cut += static_cast<int64_t>(cand.size() - len);
    std::vector<int32_t> c(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(len));
    c.push_back(sp.reward);
    longest_candidate = std::max<int64_t>(longest_candidate, static_cast<int64_t>(c.size()));
    out.candidates.push_back(std::move(c));
  }

  // prefix = bos P sep R <|reward|> P sep: the prompt appears twice, so each kept prompt token costs 2.
  const int64_t fixed = 1 + 2 * static_cast<int64_t>(sep.size()) + static_cast<int64_t>(ref_len) + 1;
  const int64_t room = limits.max_length - fixed - longest_candidate;
  if (room < 0) return std::nullopt;
  const int64_t keep = std::min<int64_t>(static_cast<int64_t>(prompt.size()), room / 2);
  out.prompt_tokens_cut = static_cast<int64_t>(prompt.size()) - keep;
  const auto prompt_begin = prompt.end() - keep;  // cut from the left: the prompt's end is kept

  auto& p = out.prefix;
  p.reserve(static_cast<size_t>(fixed + 2 * keep));
  p.push_back(sp.bos);
  p.insert(p.end(), prompt_begin, prompt.end());
  p.insert(p.end(), sep.begin(), sep.end());
  p.insert(p.end(), reference.begin(), reference.begin() + static_cast<std::ptrdiff_t>(ref_len));
  p.push_back(sp.reward_sep);
  p.insert(p.end(), prompt_begin, prompt.end());
  p.insert(p.end(), sep.begin(), sep.end());
  return out;
}

std::optional<EncodedGroup> encode_group_text(const Tokenizer& tok, TemplateKind kind,
                                              const std::string& prompt, const std::string& reference,
                                              const std::vector<std::string>& candidates,
                                              const TemplateLimits& limits) {
  std::vector<std::vector<int32_t>> cand_ids;
  cand_ids.reserve(candidates.size());
  for (const auto& c : candidates) cand_ids.push_back(tok.encode(c));
  return encode_group(tok, kind, tok.encode(prompt), tok.encode(reference), cand_ids, limits);
}

}  // namespace polar
