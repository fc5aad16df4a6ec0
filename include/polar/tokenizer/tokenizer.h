// Tokenizer: a sentencepiece model plus the special-token ids POLAR needs (bos, eos, pad, the
// <|reward|> separator and the reward token at which the reward is read). sentencepiece stays
// out of this header.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
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

  // sentencepiece's ids of `text` (special-token strings in it are ordinary text here).
  std::vector<int32_t> encode(const std::string& text) const;
  // The same ids, each with the end (exclusive byte offset into `text`) of the text it covers;
  // ends never decrease. A piece that covers no text (a dummy-prefix "\u2581") ends where it
  // starts.
  void encode_with_ends(std::string_view text, std::vector<int32_t>& ids,
                        std::vector<size_t>& ends) const;
  // The ids Hugging Face tokenizers give `text` (without bos): every special piece in it becomes
  // its id, and each run of text between them is encoded by sentencepiece on its own (so each
  // run gets the dummy prefix when the model adds one). Appends to `ids` and `ends`.
  void encode_split_specials(std::string_view text, std::vector<int32_t>& ids,
                             std::vector<size_t>& ends) const;
  // Strings that Hugging Face tokenizers split out of text as single ids (added tokens): every
  // control and unknown piece of the model, and the bos/eos/pad/<|reward|>/reward pieces.
  // Sorted by length, longest first, so the first match at a position is the longest.
  const std::vector<std::pair<std::string, int32_t>>& special_pieces() const;
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string id_to_piece(int32_t id) const;
  int32_t piece_to_id(const std::string& piece) const;  // -1 when unknown
  int64_t vocab_size() const;
  const SpecialTokens& special() const { return special_; }

  // "sha256:<hex>" of the sentencepiece model bytes and the ids the template uses (bos,
  // <|reward|>, reward token): equal fingerprints give equal ids for every text.
  const std::string& fingerprint() const;
  // First 12 hex digits, for messages.
  std::string short_fingerprint() const;
  // The sentencepiece model file's bytes.
  const std::string& model_bytes() const;
  // Where it was loaded from, for messages.
  const std::string& source() const;

  // Writes tokenizer.model and polar_tokenizer.json (with the fingerprint) into `dir` (created
  // if needed), atomically.
  void save(const std::string& dir) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
  SpecialTokens special_;
  std::string fingerprint_;
};

// Throws unless `ids_tok` (the tokenizer that made the token ids) is `weights_tok` (the one the
// weights were trained with), naming both, e.g.
//   require_same_tokenizer(model_tok, "checkpoint runs/x/final", data_tok, "data data/ft/train")
void require_same_tokenizer(const Tokenizer& weights_tok, const std::string& weights_what,
                            const Tokenizer& ids_tok, const std::string& ids_what);

struct TokenizerTrainOptions {
  std::vector<std::string> inputs;  // text or JSONL files (JSONL: every string field is used)
  int64_t vocab_size = 512;
  std::string output_dir;
  std::string model_type = "bpe";  // bpe | unigram
  bool split_digits = true;        // false lets frequent numbers become single pieces
  // Like Llama/InternLM2 tokenizers: every text (and every run between special tokens) starts
  // with "\u2581", so a word is the same piece at the start of a text and after a space.
  bool add_dummy_prefix = false;
  // identity keeps text as given; nmt_nfkc/nfkc are sentencepiece's defaults (NFKC, newlines to
  // spaces, repeated spaces collapsed): POLAR's "\n" separator then encodes to nothing.
  std::string normalization = "identity";
  int64_t max_sentences = 200000;
};

// Trains a sentencepiece model with byte fallback, the given normalisation (identity by default:
// newlines and spaces are kept as they are), <|reward|> and <|reward_token|> as control pieces;
// writes it with save().
void train_tokenizer(const TokenizerTrainOptions& options);

}  // namespace polar
