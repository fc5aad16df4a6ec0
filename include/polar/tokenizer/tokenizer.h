// Tokenizer: a sentencepiece model or a Hugging Face tokenizer.json (byte-level or Metaspace BPE)
// plus the special-token ids POLAR needs (bos, eos, pad, the <|reward|> separator and the reward
// token at which the reward is read). The backends (src/tokenizer/backend.h) stay out of this
// header; a new one is added there and in Tokenizer::load's directory probe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace polar {

struct SpecialTokens {
  int32_t bos = -1;  // -1 when the tokenizer puts nothing first (Qwen's tokenizer.json)
  int32_t eos = -1;
  int32_t pad = -1;
  int32_t reward_sep = -1;  // "<|reward|>" between the reference and the second prompt copy
  int32_t reward = -1;      // the last token of every sequence; the reward is read here
};

struct TemplateTokenChoice;

class Tokenizer {
 public:
  // `path` is a directory holding tokenizer.model (sentencepiece) or tokenizer.json (Hugging
  // Face), optionally with polar_tokenizer.json naming the special ids as written by save(), or a
  // path to a .model / tokenizer.json file. Special ids are looked up by piece name when the json
  // is absent: "<|reward|>", "<|reward_token|>" (also InternLM2's "[UNUSED_TOKEN_130]"), "<s>",
  // "</s>", "<pad>"/"<unk>"; a tokenizer.json's bos is what its post_processor puts first.
  static Tokenizer load(const std::string& path);
  // The same without requiring the <|reward|> separator and the reward token (special().reward_sep
  // and .reward are -1 when absent): a base model's tokenizer, for choose_polar_tokens().
  static Tokenizer load_base(const std::string& path);

  // "sentencepiece" or "tokenizer.json".
  const char* backend_name() const;

  // The model's ids of `text`, special-token strings in it being ordinary text (a tokenizer.json
  // runs its normalizer, pre-tokenizer and BPE, without added tokens or post_processor).
  std::vector<int32_t> encode(const std::string& text) const;
  // The same ids, each with the end (exclusive byte offset into `text`) of the text it covers;
  // ends never decrease. A piece that covers no text (a dummy-prefix "\u2581") ends where it
  // starts.
  void encode_with_ends(std::string_view text, std::vector<int32_t>& ids,
                        std::vector<size_t>& ends) const;
  // The ids Hugging Face tokenizers give `text` (without bos): every special piece in it becomes
  // its id, and each run of text between them is encoded on its own (so each run gets the dummy
  // prefix when the model adds one). A tokenizer.json matches its added tokens exactly as the
  // `tokenizers` library does (single_word, lstrip, rstrip, normalized). Appends to `ids`, `ends`.
  void encode_split_specials(std::string_view text, std::vector<int32_t>& ids,
                             std::vector<size_t>& ends) const;
  // Strings that Hugging Face tokenizers split out of text as single ids (added tokens): every
  // control and unknown piece of the model, and the bos/eos/pad/<|reward|>/reward pieces (a
  // tokenizer.json: its added_tokens).
  // Sorted by length, longest first, so the first match at a position is the longest.
  const std::vector<std::pair<std::string, int32_t>>& special_pieces() const;
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string id_to_piece(int32_t id) const;
  int32_t piece_to_id(const std::string& piece) const;  // -1 when unknown
  int64_t vocab_size() const;
  const SpecialTokens& special() const { return special_; }

  // "sha256:<hex>" of the model file's bytes and the ids the template uses (bos, <|reward|>,
  // reward token): equal fingerprints give equal ids for every text.
  const std::string& fingerprint() const;
  // First 12 hex digits, for messages.
  std::string short_fingerprint() const;
  // The model file's bytes (tokenizer.model or tokenizer.json).
  const std::string& model_bytes() const;
  // "tokenizer.model" or "tokenizer.json": the file save() writes model_bytes() to.
  const char* model_file_name() const;
  // Where it was loaded from, for messages.
  const std::string& source() const;

  // Writes tokenizer.model or tokenizer.json and polar_tokenizer.json (with the fingerprint) into
  // `dir` (created if needed), each file atomically.
  void save(const std::string& dir) const;

  // How the <|reward|> separator and the reward token were given to a base tokenizer (see
  // choose_polar_tokens); empty `how` when they were already there.
  const TemplateTokenChoice& template_choice() const;

 private:
  friend Tokenizer with_polar_tokens(const Tokenizer& base, const TemplateTokenChoice& choice);
  static Tokenizer load_impl(const std::string& path, bool require_template_tokens);

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

// POLAR's template tokens for a base tokenizer that lacks them. The strings are always
// "<|reward|>" (what POLAR's client sends) and "<|reward_token|>"; their ids come from, in order:
//   existing  - the tokenizer already has them (pieces or added tokens): nothing changes;
//   reserved  - unused reserved special tokens (Llama 3's <|reserved_special_token_N|>, any added
//               special token named *reserved*/*unused*) are renamed to them;
//   spare_rows - new added tokens at ids the model has embedding rows for but the tokenizer has
//               no token (Qwen's padded vocabulary);
//   added     - new added tokens past the model's rows: the model's embedding must grow to
//               `vocab_size` rows (new rows initialised as the mean of the others).
struct TemplateTokenChoice {
  std::string how;  // "existing" | "reserved" | "spare_rows" | "added"; "" when not chosen
  int32_t reward_sep = -1, reward = -1;
  // (old content, id) of renamed reserved tokens, or ("", id) of new ones.
  std::vector<std::pair<std::string, int32_t>> replaced;
  int64_t vocab_size = 0;      // the tokenizer's size afterwards (max id + 1)
  int64_t embedding_rows = 0;  // rows the model needs afterwards (>= its rows before)
  std::string description;     // one line for the import log
};

// `model_rows`: the model's embedding rows (config vocab_size), or -1 when unknown (then equal to
// the tokenizer's size). Only tokenizer.json tokenizers can gain tokens; a sentencepiece model
// without them is an error naming `polar tokenizer train`.
TemplateTokenChoice choose_polar_tokens(const Tokenizer& base, int64_t model_rows = -1);
// The base with the choice applied (its tokenizer.json rewritten when tokens were renamed or
// added) and the special ids set; save() records the choice in polar_tokenizer.json.
Tokenizer with_polar_tokens(const Tokenizer& base, const TemplateTokenChoice& choice);

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
