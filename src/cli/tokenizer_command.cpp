// `polar tokenizer train|encode`: train a POLAR sentencepiece tokenizer; show how text encodes.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "polar/cli/commands.h"
#include "polar/tokenizer/formatted_text.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar::cli {

void add_tokenizer_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "Train a tokenizer or inspect how text is encoded");
  cmd->require_subcommand(1);

  auto train = std::make_shared<TokenizerTrainOptions>();
  auto* t = cmd->add_subcommand(
      "train", "Train a byte-fallback sentencepiece tokenizer with POLAR's special tokens");
  t->add_option("--input", train->inputs,
                "Text files, or .jsonl files (every string field is used)")
      ->required()
      ->check(CLI::ExistingFile);
  t->add_option("--vocab-size", train->vocab_size,
                "Vocabulary size (> 262: 256 byte pieces + specials)")
      ->required();
  t->add_option("--output", train->output_dir,
                "Directory to write tokenizer.model and polar_tokenizer.json")
      ->required();
  t->add_option("--split-digits", train->split_digits,
                "split numbers into single digits (default true)");
  t->add_option("--model-type", train->model_type, "bpe or unigram")
      ->check(CLI::IsMember({"bpe", "unigram"}))
      ->capture_default_str();
  t->add_option(
      "--add-dummy-prefix", train->add_dummy_prefix,
      "start every text with \"\u2581\" as Llama/InternLM2 tokenizers do (default false)");
  t->add_option("--normalization", train->normalization,
                "identity (keep newlines and spaces), nmt_nfkc or nfkc (sentencepiece's defaults)")
      ->check(CLI::IsMember({"identity", "nmt_nfkc", "nfkc"}))
      ->capture_default_str();
  t->add_option("--max-sentences", train->max_sentences, "Use at most this many lines of text")
      ->capture_default_str();
  t->callback([train] { train_tokenizer(*train); });

  struct EncodeArgs {
    std::string tokenizer, text;
    bool formatted = false;
  };
  auto enc = std::make_shared<EncodeArgs>();
  auto* e = cmd->add_subcommand("encode", "Print the ids and pieces of a text (debug aid)");
  e->add_option("--tokenizer", enc->tokenizer, "Tokenizer directory or .model file")->required();
  e->add_option("--text", enc->text, "Text to encode")->required();
  e->add_flag(
      "--formatted", enc->formatted,
      "encode as a serving engine does a POLAR-template string (bos, special pieces split out)");
  e->callback([enc] {
    const Tokenizer tok = Tokenizer::load(enc->tokenizer);
    const auto ids = enc->formatted ? encode_formatted_text(tok, enc->text) : tok.encode(enc->text);
    const SpecialTokens& s = tok.special();
    fmt::print("vocab {}  bos {}  eos {}  pad {}  <|reward|> {}  reward token {}\n",
               tok.vocab_size(), s.bos, s.eos, s.pad, s.reward_sep, s.reward);
    fmt::print("fingerprint {}\n{} tokens\n", tok.fingerprint(), ids.size());
    for (int32_t id : ids) fmt::print("{}\t{:?}\n", id, tok.id_to_piece(id));
  });
}

}  // namespace polar::cli
