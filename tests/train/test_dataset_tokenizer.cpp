// A dataset built by `polar data preference` records its tokenizer's fingerprint in manifest.json
// (settings.tokenizer.fingerprint), and `polar train` refuses the dataset once its tokenizer/ is
// replaced, naming both, before any step runs: by a tokenizer of another size, and by one of the
// same size trained on other text (whose ids would otherwise silently mean other pieces).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include "common/tiny_data.h"
#include "fuzz/fuzz_util.h"
#include "polar/common/json_config.h"
#include "polar/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using polar::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

const std::string kPolar = POLAR_BINARY_DIR "/polar";

polar::fuzz::ProcessResult polar_cmd(const TempDir& tmp, std::vector<std::string> args) {
  args.insert(args.begin(), kPolar);
  return polar::fuzz::run_process(args, {{"OMP_NUM_THREADS", "1"}}, 240, tmp / "log.txt");
}

// A BPE tokenizer of `vocab_size` pieces trained on text unlike the fixtures' (random letter
// words).
std::string other_text_tokenizer(const TempDir& tmp, int64_t vocab_size) {
  const std::string corpus = tmp / "other_corpus.txt";
  std::ofstream out(corpus);
  std::mt19937_64 rng(123);
  for (int line = 0; line < 1500; ++line) {
    for (int w = 0; w < 10; ++w) {
      const int len = 2 + static_cast<int>(rng() % 6);
      for (int c = 0; c < len; ++c) out << static_cast<char>('a' + rng() % 12);
      out << ' ';
    }
    out << '\n';
  }
  out.close();
  polar::TokenizerTrainOptions o;
  o.inputs = {corpus};
  o.vocab_size = vocab_size;
  o.model_type = "bpe";
  o.add_dummy_prefix = true;
  o.output_dir = tmp / "other_tok";
  polar::train_tokenizer(o);
  return o.output_dir;
}

void write_preferences(const std::string& path) {
  std::ofstream out(path);
  const char* words[] = {"the", "capital", "of", "China", "is", "Beijing", "sea", "sky", "tree"};
  std::mt19937_64 rng(5);
  auto text = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += std::string(i ? " " : "") + words[rng() % 9];
    return s;
  };
  for (int i = 0; i < 24; ++i) {
    out << json{{"prompt", {{{"role", "user"}, {"content", text(6)}}}},
                {"reference", text(4)},
                {"chosen", text(4)},
                {"rejected", text(5)}}
               .dump()
        << "\n";
  }
}

class DatasetTokenizer : public ::testing::Test {
 protected:
  void SetUp() override {
    tok_dir_ = polar::testing::tokenizer_variant_dir("bpe", true);
    write_preferences(tmp_ / "prefs.jsonl");
    const auto built = polar_cmd(tmp_, {"data", "preference", "--input", tmp_ / "prefs.jsonl",
                                        "--tokenizer", tok_dir_, "--output", tmp_ / "data"});
    ASSERT_EQ(built.exit_code, 0) << built.output;
    std::ofstream(tmp_ / "c.json")
        << polar::testing::tiny_train_config(tmp_ / "data", tmp_ / "run", 2);
  }
  // `polar train` on the dataset after its tokenizer/ is replaced by `replacement`.
  polar::fuzz::ProcessResult train_with_tokenizer(const std::string& replacement) {
    fs::remove_all(tmp_ / "data/tokenizer");
    polar::Tokenizer::load(replacement).save(tmp_ / "data/tokenizer");
    return polar_cmd(tmp_, {"train", "--config", tmp_ / "c.json", "--set", "run.log_every=1"});
  }
  void expect_refused(const polar::fuzz::ProcessResult& r, const polar::Tokenizer& replacement) {
    const polar::Tokenizer built_with = polar::Tokenizer::load(tok_dir_);
    EXPECT_FALSE(r.signaled) << r.output;
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr(tmp_ / "data/manifest.json: settings.tokenizer.fingerprint"));
    EXPECT_THAT(r.output, HasSubstr(built_with.fingerprint()));
    EXPECT_THAT(r.output, HasSubstr(tok_dir_));
    EXPECT_THAT(r.output, HasSubstr(replacement.fingerprint()));
    EXPECT_THAT(r.output, HasSubstr(tmp_ / "data/tokenizer"));
    EXPECT_THAT(r.output, Not(HasSubstr("step 1/"))) << "a step ran";
    EXPECT_FALSE(fs::exists(tmp_ / "run/final"));
  }
  TempDir tmp_;
  std::string tok_dir_;
};

TEST_F(DatasetTokenizer, ManifestCarriesTheFingerprint) {
  const json m = polar::read_json_file(tmp_ / "data/manifest.json");
  EXPECT_EQ(m["settings"]["tokenizer"]["fingerprint"],
            polar::Tokenizer::load(tok_dir_).fingerprint());
  // The untouched dataset trains.
  const auto r =
      polar_cmd(tmp_, {"train", "--config", tmp_ / "c.json", "--set", "run.log_every=1"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("step 1/2"));  // what a refused run must not print
}

TEST_F(DatasetTokenizer, TrainRefusesATokenizerOfAnotherSize) {
  const polar::Tokenizer other = polar::Tokenizer::load(polar::testing::tiny_tokenizer_dir());
  ASSERT_NE(other.vocab_size(), polar::Tokenizer::load(tok_dir_).vocab_size());
  expect_refused(train_with_tokenizer(polar::testing::tiny_tokenizer_dir()), other);
}

TEST_F(DatasetTokenizer, TrainRefusesATokenizerOfTheSameSizeTrainedOnOtherText) {
  const std::string other_dir =
      other_text_tokenizer(tmp_, polar::Tokenizer::load(tok_dir_).vocab_size());
  const polar::Tokenizer other = polar::Tokenizer::load(other_dir);
  ASSERT_EQ(other.vocab_size(), polar::Tokenizer::load(tok_dir_).vocab_size());
  ASSERT_NE(other.fingerprint(), polar::Tokenizer::load(tok_dir_).fingerprint());
  expect_refused(train_with_tokenizer(other_dir), other);
}

}  // namespace
