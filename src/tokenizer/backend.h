// A tokenizer backend: what Tokenizer needs from a model file. Adding one means a class here, a
// probe in Tokenizer::load_impl (tokenizer.cpp) and, when it can gain tokens, a branch in
// with_polar_tokens (template_tokens.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "polar/tokenizer/tokenizer.h"

namespace polar {

class TokenizerBackend {
 public:
  virtual ~TokenizerBackend() = default;
  virtual const char* name() const = 0;          // "sentencepiece" | "tokenizer.json"
  virtual const char* file_name() const = 0;     // "tokenizer.model" | "tokenizer.json"
  virtual const std::string& bytes() const = 0;  // the model file, as read
  virtual const std::string& source() const = 0;

  // Ids of text in which special-token strings are ordinary text, with each id's end offset.
  virtual void encode_with_ends(std::string_view text, std::vector<int32_t>& ids,
                                std::vector<size_t>& ends) const = 0;
  // True when the backend splits its own added tokens out of text (tokenizer.json); otherwise
  // Tokenizer splits out special_pieces() and encodes the runs between them.
  virtual bool splits_added_tokens() const { return false; }
  virtual void encode_added(std::string_view text, std::vector<int32_t>& ids,
                            std::vector<size_t>& ends) const {
    encode_with_ends(text, ids, ends);
  }
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual std::string id_to_piece(int32_t id) const = 0;
  virtual int32_t piece_to_id(const std::string& piece) const = 0;  // -1 when unknown
  virtual int64_t vocab_size() const = 0;

  // Ids found by name when no polar_tokenizer.json gives them (reward ids left at -1 here).
  virtual SpecialTokens default_specials() const = 0;
  // Strings split out of text as single ids, given the chosen special ids.
  virtual std::vector<std::pair<std::string, int32_t>> special_pieces(
      const SpecialTokens& s) const = 0;
  // True when the model file fixes the bos id (tokenizer.json's post_processor): the chosen bos
  // must be that one, so that the ids are the serving engines'.
  virtual bool fixes_bos() const { return true; }
  // The pad id when none is chosen (padding is never read; any valid id will do).
  virtual int32_t default_pad(const SpecialTokens& s) const { return s.eos >= 0 ? s.eos : 0; }
  // True for the format a directory whose polar_tokenizer.json names no backend is read as
  // (sentencepiece: the key came later), so its name is not written there.
  virtual bool implied_without_name() const { return false; }
};

// A file's bytes; throws naming the path when it cannot be read (tokenizer.cpp).
std::string read_file_bytes(const std::string& path);

std::shared_ptr<const TokenizerBackend> load_sentencepiece_backend(const std::string& path);
std::shared_ptr<const TokenizerBackend> load_hf_json_backend(const std::string& path);
// A tokenizer.json backend from bytes already in memory (`source` names them in messages).
std::shared_ptr<const TokenizerBackend> make_hf_json_backend(std::string bytes,
                                                             const std::string& source);

// A tokenizer.json backend whose added tokens carry `choice`: reserved tokens renamed to
// "<|reward|>" / "<|reward_token|>", or new ones appended (template_tokens.cpp).
std::shared_ptr<const TokenizerBackend> with_template_added_tokens(
    const TokenizerBackend& base, const TemplateTokenChoice& choice);

}  // namespace polar
