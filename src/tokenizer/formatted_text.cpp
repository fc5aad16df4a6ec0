// Ids of POLAR-template strings as serving engines compute them.
#include "polar/tokenizer/formatted_text.h"

namespace polar {

std::vector<int32_t> encode_formatted_text(const Tokenizer& tok, std::string_view text) {
  std::vector<int32_t> ids;
  std::vector<size_t> ends;
  if (tok.special().bos >= 0) {  // a tokenizer.json's post_processor may add none
    ids.push_back(tok.special().bos);
    ends.push_back(0);
  }
  tok.encode_split_specials(text, ids, ends);
  return ids;
}

std::string format_client_text(const Tokenizer& tok, TemplateKind kind, const std::string& prompt,
                               const std::string& reference, const std::string& output) {
  const std::string sep(template_separator(kind));
  return prompt + sep + reference + tok.id_to_piece(tok.special().reward_sep) + prompt + sep +
         output + tok.id_to_piece(tok.special().reward);
}

}  // namespace polar
