// Tokenizer: training options, special ids, byte-fallback round trips, save/load, name lookup.
#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "polar/common/error.h"
#include "tiny_tokenizer.h"

namespace polar {
namespace {

using polar_test::read_bytes;
using polar_test::TempDir;
using polar_test::tiny_tokenizer;
using polar_test::tiny_tokenizer_dir;
using polar_test::write_text;

bool contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// Trains a sentencepiece model directly (not through train_tokenizer), for name-lookup tests.
std::string train_raw(const TempDir& dir, const std::string& control_symbols) {
  write_text(dir.file("raw.txt"), polar_test::tiny_corpus());
  std::string args = "--input=" + dir.file("raw.txt") + " --model_prefix=" + dir.file("raw") +
                     " --vocab_size=330 --byte_fallback=true --minloglevel=2 --num_threads=1";
  if (!control_symbols.empty()) args += " --control_symbols=" + control_symbols;
  auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) throw std::runtime_error(status.ToString());
  return dir.file("raw.model");
}

TEST(TokenizerTest, TrainedSpecialIds) {
  const Tokenizer& tok = tiny_tokenizer();
  const SpecialTokens& s = tok.special();
  EXPECT_EQ(tok.piece_to_id("<unk>"), 0);
  EXPECT_EQ(s.bos, 1);
  EXPECT_EQ(s.eos, 2);
  EXPECT_EQ(s.pad, 3);
  EXPECT_EQ(tok.id_to_piece(s.pad), "<pad>");
  EXPECT_EQ(tok.id_to_piece(s.reward_sep), "<|reward|>");
  EXPECT_EQ(tok.id_to_piece(s.reward), "<|reward_token|>");
  EXPECT_GT(tok.vocab_size(), 262);
  EXPECT_LE(tok.vocab_size(), 400);
  EXPECT_EQ(tok.piece_to_id("no-such-piece"), -1);
  // Learned merges exist: a frequent corpus word takes fewer tokens than its bytes.
  EXPECT_LT(tok.encode("Beijing").size(), 7u);
}

TEST(TokenizerTest, NewlineAndBytesRoundTrip) {
  const Tokenizer& tok = tiny_tokenizer();
  const auto nl = tok.encode("\n");
  ASSERT_FALSE(nl.empty());
  EXPECT_EQ(tok.decode(nl), "\n");
  for (const std::string text :
       {"the capital\n\nof China", "  two  spaces\tand a tab ", "caf\xc3\xa9 \xe4\xb8\xad 42\r\n",
        "\n", " leading space", "123456789"}) {
    EXPECT_EQ(tok.decode(tok.encode(text)), text) << text;
  }
  // split_digits: every digit is its own piece.
  EXPECT_EQ(tok.encode("2025").size(), 4u);
  EXPECT_THROW(tok.decode({static_cast<int32_t>(tok.vocab_size())}), Error);
}

TEST(TokenizerTest, TextCannotProduceControlPieces) {
  const Tokenizer& tok = tiny_tokenizer();
  const std::string text = "answer <|reward|> and <|reward_token|> <s></s>";
  const auto ids = tok.encode(text);
  EXPECT_FALSE(contains(ids, tok.special().reward_sep));
  EXPECT_FALSE(contains(ids, tok.special().reward));
  EXPECT_FALSE(contains(ids, tok.special().bos));
  EXPECT_EQ(tok.decode(ids), text);
}

TEST(TokenizerTest, SaveLoadAndModelPath) {
  TempDir dir;
  const Tokenizer& tok = tiny_tokenizer();
  tok.save(dir.file("copy"));
  EXPECT_EQ(read_bytes(dir.file("copy/tokenizer.model")),
            read_bytes(tiny_tokenizer_dir() + "/tokenizer.model"));
  const Tokenizer back = Tokenizer::load(dir.file("copy"));
  const std::string text = "the reward model says\nBeijing 1234";
  EXPECT_EQ(back.encode(text), tok.encode(text));
  EXPECT_EQ(back.special().reward, tok.special().reward);
  EXPECT_EQ(back.special().reward_sep, tok.special().reward_sep);
  const Tokenizer by_file = Tokenizer::load(dir.file("copy/tokenizer.model"));
  EXPECT_EQ(by_file.encode(text), tok.encode(text));
}

TEST(TokenizerTest, SpecialsJsonOverridesAndIsValidated) {
  TempDir dir;
  tiny_tokenizer().save(dir.path());
  const std::string json_path = dir.file("polar_tokenizer.json");
  auto j = nlohmann::json::parse(read_bytes(json_path));
  j["reward"] = 300;
  write_text(json_path, j.dump());
  EXPECT_THROW(Tokenizer::load(dir.path()), Error);  // the saved fingerprint no longer matches
  j.erase("fingerprint");                            // ids edited by hand: no fingerprint

  write_text(json_path, j.dump());
  EXPECT_EQ(Tokenizer::load(dir.path()).special().reward, 300);

  j["reward"] = 100000;
  write_text(json_path, j.dump());
  try {
    Tokenizer::load(dir.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("polar_tokenizer.json.reward"), std::string::npos)
        << e.what();
  }
  j["reward"] = j["reward_sep"];
  write_text(json_path, j.dump());
  EXPECT_THROW(Tokenizer::load(dir.path()), Error);
  j.erase("reward");
  j["rewrad"] = 5;  // unknown keys are rejected
  write_text(json_path, j.dump());
  EXPECT_THROW(Tokenizer::load(dir.path()), Error);
}

TEST(TokenizerTest, NameLookupAndMissingRewardToken) {
  TempDir plain;
  try {
    Tokenizer::load(train_raw(plain, ""));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("<|reward|>"), std::string::npos) << e.what();
  }
  TempDir internlm;
  const Tokenizer tok = Tokenizer::load(train_raw(internlm, "<|reward|>,[UNUSED_TOKEN_130]"));
  EXPECT_EQ(tok.id_to_piece(tok.special().reward), "[UNUSED_TOKEN_130]");
  EXPECT_EQ(tok.id_to_piece(tok.special().reward_sep), "<|reward|>");

  TempDir empty;
  EXPECT_THROW(Tokenizer::load(empty.path()), Error);
  write_text(empty.file("tokenizer.model"), "not a model");
  EXPECT_THROW(Tokenizer::load(empty.path()), Error);
}

TEST(TokenizerTest, TrainingIsDeterministicAndReadsJsonl) {
  TempDir dir;
  // "quokka" appears only inside messages contents; every string field is training text.
  std::string jsonl;
  for (int i = 0; i < 60; ++i) {
    jsonl += R"({"prompt":[{"role":"user","content":"quokka quokka\nmodel"}],"id":)" +
             std::to_string(i) + "}\n";
  }
  write_text(dir.file("a.jsonl"), jsonl);
  write_text(dir.file("b.txt"), polar_test::tiny_corpus());
  TokenizerTrainOptions options;
  options.inputs = {dir.file("b.txt"), dir.file("a.jsonl")};
  options.vocab_size = 400;
  options.output_dir = dir.file("t1");
  train_tokenizer(options);
  options.output_dir = dir.file("t2");
  train_tokenizer(options);
  EXPECT_EQ(read_bytes(dir.file("t1/tokenizer.model")), read_bytes(dir.file("t2/tokenizer.model")));
  const Tokenizer tok = Tokenizer::load(dir.file("t1"));
  EXPECT_GE(tok.piece_to_id("quokka"), 0);

  write_text(dir.file("bad.jsonl"), "{\"a\":\"x\"}\n{oops\n");
  options.inputs = {dir.file("bad.jsonl")};
  try {
    train_tokenizer(options);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2:"), std::string::npos) << e.what();
  }
  options.inputs = {dir.file("b.txt")};
  options.vocab_size = 200;
  EXPECT_THROW(train_tokenizer(options), Error);
}

}  // namespace
}  // namespace polar
