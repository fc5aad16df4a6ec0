// The POLAR input template, in token space:
//   <bos> prompt SEP reference <|reward|> prompt SEP candidate <reward_token>
// (<bos> only when the tokenizer has one: a tokenizer.json's is what its post_processor adds)
// SEP is "\n" for the finetune wrapper and empty for the pretrain wrapper (prompts are prefixes).
// A group shares one prefix (everything up to and including the second SEP, or the longer common
// start of its sequences) between all its candidates: sequence i = prefix ++ candidates[i], and
// candidates[i] ends with the reward token.
//
// Text is tokenised as POLAR's client and the serving engines do: each of the two runs between
// special tokens (prompt SEP reference, prompt SEP candidate) is encoded as ONE string, so when
// nothing is cut, sequence i has exactly the ids of encode_formatted_text() of the joined string
// (formatted_text.h). The tokens of a run are assigned to prompt, SEP and response by the byte
// where each token ends; truncation then drops whole tokens (responses on the right, the prompt on
// the left), so a cut sequence may differ from re-encoding the cut text at the cut.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "polar/tokenizer/tokenizer.h"

namespace polar {

enum class TemplateKind { Pretrain, Finetune };

TemplateKind parse_template_kind(const std::string& name);  // "pretrain" | "finetune"
const char* template_kind_name(TemplateKind kind);
std::string_view template_separator(TemplateKind kind);  // "\n" (finetune) or "" (pretrain)

struct TemplateLimits {
  int64_t max_length = 16384;          // tokens per full sequence
  int64_t max_response_length = 4096;  // reference and each candidate, before the reward token
};

struct EncodedGroup {
  std::vector<int32_t> prefix;
  std::vector<std::vector<int32_t>> candidates;  // [0] positive/chosen, [1..] negatives/rejected
  int64_t prompt_tokens_cut = 0;    // tokens removed from the left of the prompt (per copy)
  int64_t response_tokens_cut = 0;  // tokens removed from the right of reference/candidates
};

// Encodes one group from already-tokenised fields joined as ids (synthetic token data; for text use
// encode_group_text, whose ids match the serving engines'). Responses are cut on the right to
// max_response_length; then the prompt is cut from the left until the longest full sequence
// fits max_length. Returns nullopt when it cannot fit even with an empty prompt.
std::optional<EncodedGroup> encode_group(const Tokenizer& tok, TemplateKind kind,
                                         const std::vector<int32_t>& prompt,
                                         const std::vector<int32_t>& reference,
                                         const std::vector<std::vector<int32_t>>& candidates,
                                         const TemplateLimits& limits);

// Same for text inputs, with the ids of the joined strings (see above).
std::optional<EncodedGroup> encode_group_text(const Tokenizer& tok, TemplateKind kind,
                                              const std::string& prompt,
                                              const std::string& reference,
                                              const std::vector<std::string>& candidates,
                                              const TemplateLimits& limits);

}  // namespace polar
