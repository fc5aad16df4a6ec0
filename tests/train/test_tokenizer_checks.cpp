// Where weights meet token ids, the tokenizer must be the weights' one: model.tokenizer with
// model.init_from, data built with another tokenizer, a resumed checkpoint, a checkpoint whose
// tokenizer/ was swapped, a manifest whose tokenizer/ was swapped. Also train.epochs and the
// seeded eval sample.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "common/tiny_data.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/config/train_config.h"
#include "polar/train/data_order.h"
#include "polar/train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using polar::testing::TempDir;

namespace {

polar::TrainConfig config_for(const TempDir& tmp, const std::string& data, const std::string& run,
                              int64_t steps, const std::vector<std::string>& overrides = {}) {
  const std::string path = tmp / (run + ".json");
  std::ofstream(path) << polar::testing::tiny_train_config(tmp / data, tmp / run, steps);
  return polar::load_train_config(path, overrides);
}

// The message of the polar::Error that constructing a Trainer throws ("" when none).
std::string setup_error(const polar::TrainConfig& cfg) {
  try {
    polar::Trainer trainer(cfg, false);
  } catch (const polar::Error& e) {
    return e.what();
  }
  return "";
}

// A 2-step run on copy-task data made with the tiny tokenizer: TMP/run/final.
class TokenizerChecks : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    polar::testing::write_copy_task_dataset(*tmp_ / "data", 32, 8);
    polar::Trainer trainer(config_for(*tmp_, "data", "run", 2), false);
    ASSERT_EQ(trainer.run(), 0);
  }
  static void TearDownTestSuite() { delete tmp_; }
  static std::string other_tokenizer() {
    return polar::testing::tokenizer_variant_dir("bpe", true);
  }
  static TempDir* tmp_;
};

TempDir* TokenizerChecks::tmp_ = nullptr;

TEST_F(TokenizerChecks, ModelTokenizerWithInitFromMustBeTheCheckpoints) {
  const std::string final_dir = *tmp_ / "run/final";
  auto cfg = config_for(*tmp_, "data", "ft1", 1,
                        {"model.init_from=" + final_dir, "model.tokenizer=" + other_tokenizer()});
  const std::string err = setup_error(cfg);
  EXPECT_NE(err.find("tokenizer mismatch"), std::string::npos) << err;
  EXPECT_NE(err.find("model.init_from " + final_dir), std::string::npos) << err;
  EXPECT_NE(err.find(other_tokenizer()), std::string::npos) << err;
  // The checkpoint's own tokenizer given explicitly is fine.
  cfg = config_for(*tmp_, "data", "ft2", 1,
                   {"model.init_from=" + final_dir, "model.tokenizer=" + final_dir + "/tokenizer"});
  EXPECT_EQ(setup_error(cfg), "");
}

TEST_F(TokenizerChecks, DataBuiltWithAnotherTokenizerIsRefused) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 16, 4);
  polar::Tokenizer::load(other_tokenizer()).save(tmp / "data/tokenizer");  // as if built with it
  auto cfg = config_for(tmp, "data", "ft", 1, {"model.init_from=" + (*tmp_ / "run/final")});
  const std::string err = setup_error(cfg);
  EXPECT_NE(err.find("the data " + (tmp / "data/train")), std::string::npos) << err;
  EXPECT_NE(err.find("model.init_from"), std::string::npos) << err;
}

TEST_F(TokenizerChecks, ManifestFingerprintMustMatchTheDatasetsTokenizer) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 16, 4);
  const polar::Tokenizer tok = polar::Tokenizer::load(tmp / "data/tokenizer");
  json manifest = {{"settings", {{"tokenizer", {{"fingerprint", tok.fingerprint()}}}}}};
  polar::write_json_file_atomic(tmp / "data/manifest.json", manifest);
  EXPECT_EQ(setup_error(config_for(tmp, "data", "a", 1)), "");
  manifest["settings"]["tokenizer"]["fingerprint"] =
      polar::Tokenizer::load(other_tokenizer()).fingerprint();
  polar::write_json_file_atomic(tmp / "data/manifest.json", manifest);
  const std::string err = setup_error(config_for(tmp, "data", "b", 1));
  EXPECT_NE(err.find("manifest.json: settings.tokenizer.fingerprint"), std::string::npos) << err;
}

TEST_F(TokenizerChecks, CheckpointStoresTheFingerprintAndRefusesASwappedTokenizer) {
  TempDir tmp;
  fs::copy(*tmp_ / "run/final", tmp / "ck", fs::copy_options::recursive);
  const json cfg = polar::read_json_file(tmp / "ck/config.json");
  const polar::Tokenizer own = polar::Tokenizer::load(tmp / "ck/tokenizer");
  ASSERT_TRUE(cfg.contains("tokenizer_fingerprint"));
  EXPECT_EQ(cfg["tokenizer_fingerprint"], own.fingerprint());
  EXPECT_NO_THROW(polar::load_model(tmp / "ck", torch::kCPU));

  polar::Tokenizer::load(other_tokenizer()).save(tmp / "ck/tokenizer");
  try {
    polar::load_model(tmp / "ck", torch::kCPU);
    FAIL() << "a swapped tokenizer/ was accepted";
  } catch (const polar::Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json: the weights were saved with tokenizer " +
                                         own.fingerprint()),
              std::string::npos)
        << e.what();
  }
  // A checkpoint from before fingerprints: its tokenizer/ is taken as is.
  json old = cfg;
  old.erase("tokenizer_fingerprint");
  polar::write_json_file_atomic(tmp / "ck/config.json", old);
  own.save(tmp / "ck/tokenizer");
  EXPECT_EQ(polar::load_model(tmp / "ck", torch::kCPU).tokenizer.fingerprint(), own.fingerprint());
  // A checkpoint's config.json is still a valid --config.
  EXPECT_NO_THROW(polar::TrainConfig::from_json(cfg, "config.json"));
}

TEST_F(TokenizerChecks, ResumeRefusesACheckpointOfAnotherTokenizer) {
  TempDir tmp;
  fs::copy(*tmp_ / "run", tmp / "run", fs::copy_options::recursive);
  json c = polar::read_json_file(tmp / "run/checkpoint-2/config.json");
  c.erase("tokenizer_fingerprint");
  polar::write_json_file_atomic(tmp / "run/checkpoint-2/config.json", c);
  polar::Tokenizer::load(other_tokenizer()).save(tmp / "run/checkpoint-2/tokenizer");
  fs::copy(*tmp_ / "data", tmp / "data", fs::copy_options::recursive);
  auto cfg = config_for(tmp, "data", "run", 4);
  try {
    polar::Trainer trainer(cfg, true);
    FAIL() << "resumed from a checkpoint of another tokenizer";
  } catch (const polar::Error& e) {
    EXPECT_NE(std::string(e.what()).find("the checkpoint " + (tmp / "run/checkpoint-2")),
              std::string::npos)
        << e.what();
  }
}

TEST_F(TokenizerChecks, EpochsGiveTheSteps) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 20, 4);
  auto cfg =
      config_for(tmp, "data", "run", 100, {"train.epochs=1"});  // 20 groups / 8 per step -> 3 steps
  polar::Trainer trainer(cfg, false);
  ASSERT_EQ(trainer.run(), 0);
  const json state = polar::read_json_file(tmp / "run/final/trainer_state.json");
  EXPECT_EQ(state["step"], 3);
  EXPECT_EQ(polar::read_json_file(tmp / "run/config.json")["train"]["steps"], 3);
  EXPECT_EQ(polar::steps_for_epochs(2.0, 20, 8), 5);
  EXPECT_EQ(polar::steps_for_epochs(1.0, 16, 8), 2);
  EXPECT_EQ(polar::steps_for_epochs(0.01, 16, 8), 1);
  EXPECT_THROW(polar::steps_for_epochs(0.0, 16, 8), polar::Error);
  EXPECT_THROW(config_for(tmp, "data", "bad", 1, {"train.epochs=-1"}), polar::Error);
}

}  // namespace

TEST(EvalSample, SeededUniformDistinctSorted) {
  const auto a = polar::sample_indices(1000, 100, 7);
  ASSERT_EQ(a.size(), 100u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::adjacent_find(a.begin(), a.end()), a.end());  // distinct
  EXPECT_EQ(a, polar::sample_indices(1000, 100, 7));
  EXPECT_NE(a, polar::sample_indices(1000, 100, 8));
  EXPECT_GT(a.back(), 500) << "not the first N";
  // Uniform: over many seeds every index is drawn about k/n of the time, the mean is ~ (n-1)/2.
  std::vector<int> hits(50, 0);
  double mean = 0;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    for (int64_t i : polar::sample_indices(50, 10, seed)) {
      hits[static_cast<size_t>(i)]++;
      mean += static_cast<double>(i) / (2000.0 * 10.0);
    }
  }
  for (int h : hits) EXPECT_NEAR(h, 400, 80);  // 2000 * 10 / 50, binomial sd ~18
  EXPECT_NEAR(mean, 24.5, 0.5);
  EXPECT_EQ(polar::sample_indices(5, 0, 1), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(polar::sample_indices(5, 9, 1).size(), 5u);
}
