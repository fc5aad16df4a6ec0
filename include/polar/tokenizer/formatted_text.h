// Token ids of text already in POLAR's template, as POLAR's RewardModelClient sends it to a
// serving engine:
//   prompt "\n" reference "<|reward|>" prompt "\n" output "[UNUSED_TOKEN_130]"
// (the pre-training wrapper has no "\n"; the last string is the tokenizer's reward piece).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "polar/tokenizer/template.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar {

// The ids a serving engine (vLLM, SGLang, lmdeploy through Hugging Face tokenizers) gives
// `text`: bos, then the text with every special piece (the tokenizer's control and unknown
// pieces, bos/eos/pad, "<|reward|>", the reward piece) split out as its id, and each run of text
// between them encoded by sentencepiece on its own. For a record that is not truncated this is
// exactly the concatenation encode_group_text() produces (prefix ++ candidate).
std::vector<int32_t> encode_formatted_text(const Tokenizer& tok, std::string_view text);

// The string POLAR's client builds for one (prompt, reference, output), with this tokenizer's
// "<|reward|>" and reward pieces.
std::string format_client_text(const Tokenizer& tok, TemplateKind kind, const std::string& prompt,
                               const std::string& reference, const std::string& output);

}  // namespace polar
