// Tokenizer: a sentencepiece model plus the special-token ids POLAR needs (bos, eos, pad, the
// <|reward|> separator and the reward token at which the reward is read). sentencepiece stays
// out of this header.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace polar {

struct SpecialTokens {
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t pad = -1;
  int32_t reward_sep = -1;  // "<|reward|>" between the reference and the second prompt copy
  int32_t reward = -1;      // the last token of every sequence; the reward is read here
};

class Tokenizer {
 public:
  // `path` is a directory holding tokenizer.model (and optionally polar_tokenizer.json with the
  // special ids, as written by save()) or a path to a .model file. Special ids are looked up by
  // piece name when the json is absent: "<|reward|>", "<|reward_token|>" (also InternLM2's
  // "[UNUSED_TOKEN_130]"), "<s>", "</s>", "<pad>"/"<unk>".
  static Tokenizer load(const std::string& path);

  std::vector<int32_t> encode(const std::string& text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string id_to_piece(int32_t id) const;
  int32_t piece_to_id(const std::string& piece) const;  // -1 when unknown
  int64_t vocab_size() const;
  const SpecialTokens& special() const { return special_; }

  // Writes tokenizer.model and polar_tokenizer.json into `dir` (created if needed), atomically.
  void save(const std::string& dir) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
  SpecialTokens special_;
};

struct TokenizerTrainOptions {
  std::vector<std::string> inputs;  // text or JSONL files (JSONL: every string field is used)
  int64_t vocab_size = 512;
  std::string output_dir;
  std::string model_type = "bpe";  // bpe | unigram
  bool split_digits = true;         // false lets frequent numbers become single pieces
  int64_t max_sentences = 200000;
};

// Trains a sentencepiece model with byte fallback, identity normalisation (newlines and spaces
// are kept as they are), <|reward|> and <|reward_token|> as control pieces; writes it with save().
void train_tokenizer(const TokenizerTrainOptions& options);

}  // namespace polar
