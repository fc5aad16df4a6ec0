// Formatted strings -> ids, split on the special-token strings (see formatted.h).
#include "polar/serve/formatted.h"


#include "polar/common/error.h"

namespace polar::serve {

namespace {

struct Special {
  std::string text;
  int32_t id;
};

std::vector<Special> special_strings(const Tokenizer& tok) {
  const SpecialTokens& sp = tok.special();
  std::vector<Special> out{{tok.id_to_piece(sp.reward_sep), sp.reward_sep},
                           {tok.id_to_piece(sp.reward), sp.reward}};
  if (out[1].text != kClientRewardToken) out.push_back({std::string(kClientRewardToken), sp.reward});
  return out;
}

}  // namespace

std::vector<int32_t> tokenize_formatted(const Tokenizer& tok, std::string_view text) {
  const std::vector<Special> specials = special_strings(tok);
  std::vector<int32_t> ids{tok.special().bos};
  size_t pos = 0;
  while (pos <= text.size()) {
    // The earliest special string from `pos` (the longest one when two start at the same byte).
    size_t best = std::string_view::npos;
    const Special* match = nullptr;
    for (const Special& s : specials) {
      size_t at = text.find(s.text, pos);
      if (at < best || (at == best && at != std::string_view::npos && s.text.size() > match->text.size())) {
        best = at;
        match = &s;
      }
    }
    const size_t end = match ? best : text.size();
    if (end > pos) {
      std::vector<int32_t> part = tok.encode(std::string(text.substr(pos, end - pos)));
      ids.insert(ids.end(), part.begin(), part.end());
    }
    if (!match) break;
    ids.push_back(match->id);
    pos = best + match->text.size();
  }
  return ids;
}

bool ends_with_reward_token(const Tokenizer& tok, std::string_view text) {
  auto ends_with = [&](std::string_view suffix) {
    return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
  };
  return ends_with(tok.id_to_piece(tok.special().reward)) || ends_with(kClientRewardToken);
}

EncodedGroup sequence_as_group(const std::vector<int32_t>& ids) {
  POLAR_CHECK(ids.size() >= 2, "sequence_as_group: a sequence needs BOS and the reward token, got ", ids.size(),
              " ids");
  EncodedGroup g;
  g.prefix.assign(ids.begin(), ids.end() - 1);
  g.candidates.push_back({ids.back()});
  return g;
}

}  // namespace polar::serve
