// `polar tokenizer train|encode|bench`: train a POLAR sentencepiece tokenizer; show how text
// encodes; measure encoding speed.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "polar/cli/commands.h"
#include "polar/common/error.h"
#include "polar/tokenizer/formatted_text.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar::cli {

namespace {

void add_train_subcommand(CLI::App* cmd) {
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
}

struct EncodeArgs {
  std::string tokenizer, text;
  bool formatted = false;
};

void print_encoding(const EncodeArgs& enc) {
  const Tokenizer tok = Tokenizer::load_base(enc.tokenizer);
  const auto ids = enc.formatted ? encode_formatted_text(tok, enc.text) : tok.encode(enc.text);
  const SpecialTokens& s = tok.special();
  fmt::print("vocab {}  bos {}  eos {}  pad {}  <|reward|> {}  reward token {}\n", tok.vocab_size(),
             s.bos, s.eos, s.pad, s.reward_sep, s.reward);
  fmt::print("fingerprint {}\n{} tokens\n", tok.fingerprint(), ids.size());
  for (int32_t id : ids) fmt::print("{}\t{:?}\n", id, tok.id_to_piece(id));
}

void add_encode_subcommand(CLI::App* cmd) {
  auto enc = std::make_shared<EncodeArgs>();
  auto* e = cmd->add_subcommand("encode", "Print the ids and pieces of a text (debug aid)");
  e->add_option("--tokenizer", enc->tokenizer,
                "Tokenizer directory (tokenizer.model or tokenizer.json) or model file")
      ->required();
  e->add_option("--text", enc->text, "Text to encode")->required();
  e->add_flag(
      "--formatted", enc->formatted,
      "encode as a serving engine does a POLAR-template string (bos, special pieces split out)");
  e->callback([enc] { print_encoding(*enc); });
}

struct BenchArgs {
  std::string tokenizer, input;
  int threads = 1;
};

// Tokens per thread; thread t encodes lines t, t + n, t + 2n, ...
std::vector<size_t> encode_lines_in_parallel(const Tokenizer& tok,
                                             const std::vector<std::string>& lines, size_t n) {
  std::vector<size_t> tokens(n, 0);
  std::vector<std::string> errors(n);
  std::vector<std::thread> pool;
  for (size_t t = 0; t < n; ++t) {
    pool.emplace_back([&, t] {
      try {
        std::vector<int32_t> ids;
        std::vector<size_t> ends;
        for (size_t i = t; i < lines.size(); i += n) {
          ids.clear();
          ends.clear();
          tok.encode_split_specials(lines[i], ids, ends);
          tokens[t] += ids.size();
        }
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (const auto& e : errors) POLAR_CHECK(e.empty(), e);
  return tokens;
}

void bench_tokenizer(const BenchArgs& bench) {
  const Tokenizer tok = Tokenizer::load_base(bench.tokenizer);
  std::ifstream in(bench.input, std::ios::binary);
  POLAR_CHECK(in.good(), bench.input, ": cannot open");
  std::vector<std::string> lines;
  size_t bytes = 0;
  for (std::string line; std::getline(in, line);) {
    bytes += line.size();
    lines.push_back(std::move(line));
  }
  const auto n = static_cast<size_t>(bench.threads);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<size_t> tokens = encode_lines_in_parallel(tok, lines, n);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  size_t total = 0;
  for (size_t c : tokens) total += c;
  fmt::print(
      "{{\"backend\": \"{}\", \"threads\": {}, \"documents\": {}, \"bytes\": {}, "
      "\"tokens\": {}, \"seconds\": {:.3f}, \"tokens_per_s\": {:.0f}, "
      "\"tokens_per_s_per_thread\": {:.0f}, \"mb_per_s\": {:.2f}}}\n",
      tok.backend_name(), n, lines.size(), bytes, total, secs, total / secs,
      total / secs / static_cast<double>(n), bytes / secs / 1e6);
}

void add_bench_subcommand(CLI::App* cmd) {
  auto bench = std::make_shared<BenchArgs>();
  auto* b = cmd->add_subcommand(
      "bench", "Encode every line of a text file as the data builders do; print tokens/s");
  b->add_option("--tokenizer", bench->tokenizer, "Tokenizer directory or model file")->required();
  b->add_option("--input", bench->input, "Text file; each line is one document")
      ->required()
      ->check(CLI::ExistingFile);
  b->add_option("--threads", bench->threads, "Encoding threads")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  b->callback([bench] { bench_tokenizer(*bench); });
}

}  // namespace

void add_tokenizer_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "Train a tokenizer or inspect how text is encoded");
  cmd->require_subcommand(1);
  add_train_subcommand(cmd);
  add_encode_subcommand(cmd);
  add_bench_subcommand(cmd);
}

}  // namespace polar::cli
