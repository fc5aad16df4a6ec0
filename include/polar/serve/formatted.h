// Formatted reward-model strings, as RL clients send them to a reward server:
//   prompt "\n" reference <|reward|> prompt "\n" candidate [reward token]
// The client has already truncated and joined the parts; the server only turns the string into
// ids the way serving engines do (special-token strings matched literally, the text between them
// encoded with the tokenizer, BOS first) and checks that it ends with the reward token.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "polar/tokenizer/template.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar::serve {

// POLAR's client appends this string whatever the tokenizer calls its reward token.
inline constexpr std::string_view kClientRewardToken = "[UNUSED_TOKEN_130]";

// The server's "formatted string -> ids" step: encode_formatted_text (the serving engines'
// encoding, tokenizer/formatted_text.h), with a trailing kClientRewardToken read as the
// tokenizer's reward token when that has another name.
std::vector<int32_t> tokenize_formatted(const Tokenizer& tok, std::string_view text);

// True when `text` ends with the reward token (the tokenizer's piece or kClientRewardToken).
bool ends_with_reward_token(const Tokenizer& tok, std::string_view text);

// A whole sequence (BOS ... reward token) as a one-candidate group for reward_groups(): the
// prefix is everything before the reward token.
EncodedGroup sequence_as_group(const std::vector<int32_t>& ids);

}  // namespace polar::serve
