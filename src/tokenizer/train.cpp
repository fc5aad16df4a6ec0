// train_tokenizer: a byte-fallback sentencepiece model trained from text and JSONL files, with
// POLAR's control pieces. Sentences are fed from memory, so JSONL needs no intermediate file.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "polar/common/error.h"
#include "polar/common/utf8.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar {

namespace {

using nlohmann::json;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class SentenceCollector {
 public:
  explicit SentenceCollector(int64_t limit) : limit_(limit) {}
  bool full() const { return static_cast<int64_t>(sentences_.size()) >= limit_; }

  // Splits into lines: training sentences never contain "\n", which byte fallback then encodes.
  void add_text(const std::string& text) {
    size_t start = 0;
    while (start <= text.size() && !full()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      if (end > start) sentences_.push_back(text.substr(start, end - start));
      start = end + 1;
    }
  }

  // Every string value of a JSON document, recursively (messages contents included).
  void add_json(const json& value) {
    if (value.is_string()) {
      add_text(value.get_ref<const std::string&>());
    } else if (value.is_array() || value.is_object()) {
      for (const auto& child : value) {
        if (full()) return;
        add_json(child);
      }
    }
  }

  std::vector<std::string>& sentences() { return sentences_; }

 private:
  int64_t limit_;
  std::vector<std::string> sentences_;
};

void collect_file(const std::string& path, SentenceCollector& out) {
  std::ifstream in(path, std::ios::binary);
  POLAR_CHECK(in.good(), path, ": cannot open file");
  const bool jsonl = ends_with(path, ".jsonl");
  std::string line;
  int64_t line_no = 0;
  while (!out.full() && std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t bad = 0;
    POLAR_CHECK(is_valid_utf8(line, &bad), path, ":", line_no, ": invalid UTF-8 at byte ", bad + 1);
    if (!jsonl) {
      out.add_text(line);
      continue;
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    json value;
    try {
      value = json::parse(line);
    } catch (const json::exception& e) {  // syntax, or a number out of range (1e999)
      throw Error(path + ":" + std::to_string(line_no) + ": invalid JSON: " + e.what());
    }
    out.add_json(value);
  }
}

// Removes a file or directory tree; missing is fine.
void remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

class VectorIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorIterator(const std::vector<std::string>& v) : v_(v) {}
  bool done() const override { return i_ >= v_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return v_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& v_;
  size_t i_ = 0;
};

}  // namespace

void train_tokenizer(const TokenizerTrainOptions& options) {
  POLAR_CHECK(!options.inputs.empty(), "tokenizer train: no input files");
  POLAR_CHECK(!options.output_dir.empty(), "tokenizer train: no output directory");
  POLAR_CHECK(options.model_type == "bpe" || options.model_type == "unigram",
              "tokenizer train: --model-type must be bpe or unigram, got \"", options.model_type,
              "\"");
  // Byte fallback needs 256 byte pieces, 4 specials and 2 control pieces, plus the characters.
  POLAR_CHECK(options.vocab_size > 262,
              "tokenizer train: --vocab-size must exceed 262 (256 byte pieces + ",
              "<unk> <s> </s> <pad> <|reward|> <|reward_token|>), got ", options.vocab_size);
  POLAR_CHECK(options.max_sentences > 0, "tokenizer train: max_sentences must be positive");

  SentenceCollector collector(options.max_sentences);
  for (const auto& path : options.inputs) collect_file(path, collector);
  POLAR_CHECK(!collector.sentences().empty(), "tokenizer train: the inputs hold no text");
  spdlog::info("tokenizer: training {} (vocab {}) on {} sentences", options.model_type,
               options.vocab_size, collector.sentences().size());

  const std::string& norm = options.normalization;
  POLAR_CHECK(norm == "identity" || norm == "nmt_nfkc" || norm == "nfkc",
              "tokenizer train: normalization must be ", "identity, nmt_nfkc or nfkc, got \"", norm,
              "\"");
  const bool identity = norm == "identity";
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", options.model_type},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"byte_fallback", "true"},
      {"normalization_rule_name", norm},  // identity keeps text exactly as given (newlines, spaces)
      {"remove_extra_whitespaces", identity ? "false" : "true"},
      {"add_dummy_prefix", options.add_dummy_prefix ? "true" : "false"},
      {"split_digits", options.split_digits ? "true" : "false"},
      {"hard_vocab_limit", "false"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "3"},
      {"pad_piece", "<pad>"},
      // Control pieces are never produced from text, so user text cannot inject a reward token.
      {"control_symbols", "<|reward|>,<|reward_token|>"},
      {"num_threads", "1"},  // determinism: same corpus, same model bytes
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      {"max_sentence_length", "65536"},
      {"minloglevel", "1"},
  };
  sentencepiece::SetRandomGeneratorSeed(20250707);
  VectorIterator iterator(collector.sentences());
  std::string serialized;
  auto status = sentencepiece::SentencePieceTrainer::Train(args, &iterator, &serialized);
  POLAR_CHECK(status.ok(), "tokenizer train: sentencepiece failed: ", status.ToString());

  // Round-trip through load() so the saved directory is exactly what training will read.
  namespace fs = std::filesystem;
  const fs::path tmp_dir = options.output_dir + ".tmp-" + std::to_string(::getpid());
  remove_tree(tmp_dir.string());
  fs::create_directories(tmp_dir);
  try {
    {
      std::ofstream out(tmp_dir / "tokenizer.model", std::ios::binary | std::ios::trunc);
      out.write(serialized.data(), static_cast<std::streamsize>(serialized.size()));
      POLAR_CHECK(out.good(), (tmp_dir / "tokenizer.model").string(), ": write failed");
    }
    Tokenizer tok = Tokenizer::load(tmp_dir.string());
    if (identity) {
      const std::vector<int32_t> newline = tok.encode("\n");
      POLAR_CHECK(tok.decode(newline) == "\n", "tokenizer train: \"\\n\" does not round-trip");
    } else {
      spdlog::warn(
          "tokenizer: {} normalisation turns newlines into spaces and collapses repeated spaces",
          norm);
    }
    tok.save(options.output_dir);
    remove_tree(tmp_dir.string());
    spdlog::info("tokenizer: wrote {} ({} pieces)", options.output_dir, tok.vocab_size());
  } catch (...) {
    remove_tree(tmp_dir.string());
    throw;
  }
}

}  // namespace polar
