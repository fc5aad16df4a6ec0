// Formatted strings -> ids, split on the special-token strings (see formatted.h).
#include "polar/serve/formatted.h"

#include "polar/common/error.h"
#include "polar/tokenizer/formatted_text.h"

namespace polar::serve {

std::vector<int32_t> tokenize_formatted(const Tokenizer& tok, std::string_view text) {
  // POLAR's client always appends kClientRewardToken; a tokenizer whose reward piece has another
  // name takes it as its own reward token. Everything else is the engines' encoding, in one place.
  const std::string reward_piece = tok.id_to_piece(tok.special().reward);
  if (reward_piece != kClientRewardToken && text.size() >= kClientRewardToken.size() &&
      text.substr(text.size() - kClientRewardToken.size()) == kClientRewardToken) {
    std::string replaced(text.substr(0, text.size() - kClientRewardToken.size()));
    replaced += reward_piece;
    return encode_formatted_text(tok, replaced);
  }
  return encode_formatted_text(tok, text);
}

bool ends_with_reward_token(const Tokenizer& tok, std::string_view text) {
  auto ends_with = [&](std::string_view suffix) {
    return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
  };
  return ends_with(tok.id_to_piece(tok.special().reward)) || ends_with(kClientRewardToken);
}

EncodedGroup sequence_as_group(const std::vector<int32_t>& ids) {
  POLAR_CHECK(ids.size() >= 2, "sequence_as_group: a sequence needs BOS and the reward token, got ",
              ids.size(), " ids");
  EncodedGroup g;
  g.prefix.assign(ids.begin(), ids.end() - 1);
  g.candidates.push_back({ids.back()});
  return g;
}

}  // namespace polar::serve
