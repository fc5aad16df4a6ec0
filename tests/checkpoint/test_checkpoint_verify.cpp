// Checkpoint integrity: checksums written at save and checked at load, finite weights, one
// config validator for train and for a checkpoint's config.json, non-finite rewards refused,
// and stale temporaries of killed saves removed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/wait.h>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <tuple>

#include "common/tiny_checkpoint.h"
#include "common/tiny_data.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/verify.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/config/train_config.h"
#include "polar/eval/eval.h"

namespace fs = std::filesystem;
using nlohmann::json;
using polar::testing::TempDir;
using ::testing::HasSubstr;

namespace {

// Saves a tiny training checkpoint; `poison` puts a NaN in one weight first.
std::string save_tiny(const std::string& dir, bool poison = false) {
  return polar::testing::write_tiny_checkpoint(dir, true, [poison](polar::RewardModel& m) {
    if (poison) m->named_parameters()["model.layers.0.mlp.up_proj.weight"].view(-1)[7] = NAN;
  });
}

std::string load_error(const std::string& dir, bool verify = true) {
  try {
    polar::load_model(dir, torch::kCPU, verify);
  } catch (const polar::Error& e) {
    return e.what();
  }
  return "";
}

void flip_byte(const std::string& path, int64_t from_end) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(-from_end, std::ios::end);
  char c = 0;
  f.read(&c, 1);
  f.seekp(-from_end, std::ios::end);
  c ^= 0x10;
  f.write(&c, 1);
}

pid_t dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

}  // namespace

TEST(RobustCheckpoint, ChecksumsListEveryTensorFile) {
  TempDir tmp;
  const std::string dir = save_tiny(tmp / "ckpt");
  const json sums = polar::read_json_file(dir + "/checksums.json");
  EXPECT_EQ(sums["algorithm"], "crc32");
  EXPECT_TRUE(sums["files"].contains("model.safetensors"));
  EXPECT_TRUE(sums["files"].contains("optimizer.pt"));
  EXPECT_EQ(sums["files"]["model.safetensors"]["bytes"].get<uint64_t>(),
            fs::file_size(dir + "/model.safetensors"));
  EXPECT_EQ(load_error(dir), "");
}

TEST(RobustCheckpoint, FlippedBitIsReportedNotScored) {
  TempDir tmp;
  const std::string dir = save_tiny(tmp / "ckpt");
  flip_byte(dir + "/model.safetensors", 100);  // inside the last tensor's data
  const std::string msg = load_error(dir);
  EXPECT_THAT(msg, HasSubstr(dir + "/model.safetensors: CRC-32"));
  EXPECT_THAT(msg, HasSubstr("--no-verify"));
  EXPECT_EQ(load_error(dir, false), "") << "--no-verify loads what the bytes say";

  const std::string other = save_tiny(tmp / "ckpt2");
  fs::resize_file(other + "/optimizer.pt", fs::file_size(other + "/optimizer.pt") - 3);
  EXPECT_THAT(load_error(other), HasSubstr("optimizer.pt: "));
  fs::remove(other + "/model.safetensors");
  EXPECT_THAT(load_error(other), HasSubstr("model.safetensors: missing"));
}

TEST(RobustCheckpoint, CheckpointWithoutChecksumsStillLoads) {
  TempDir tmp;
  const std::string dir = save_tiny(tmp / "ckpt");
  fs::remove(dir + "/checksums.json");
  EXPECT_EQ(load_error(dir), "");
}

TEST(RobustCheckpoint, NonFiniteWeightsAreRefusedAtLoadAndRewardsAtEval) {
  TempDir tmp;
  const std::string dir = save_tiny(tmp / "ckpt", /*poison=*/true);
  EXPECT_THAT(load_error(dir),
              HasSubstr("tensor \"model.layers.0.mlp.up_proj.weight\" holds 1 non-finite values"));
  auto lm = polar::load_model(dir, torch::kCPU, /*verify=*/false);
  polar::PreferenceRecord r;
  r.prompt = "how many";
  r.reference = "the sea";
  r.chosen = "a tree";
  r.rejected = "yes";
  r.line = 4;
  try {
    polar::evaluate_preferences(lm, {r}, polar::ScoreOptions{});
    ADD_FAILURE() << "scored with NaN weights";
  } catch (const polar::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("line 4: the model gave a non-finite reward"));
  }
  polar::ScoringRecord s{"how many", "the sea", "a tree", 9};
  EXPECT_THROW(polar::score_records(lm, {s}, polar::ScoreOptions{}), polar::Error);
}

TEST(RobustCheckpoint, OneValidatorForTrainAndCheckpointConfig) {
  TempDir tmp;
  const std::string dir = save_tiny(tmp / "ckpt");
  json config = polar::read_json_file(dir + "/config.json");
  for (const auto& [key, value, expected] : std::vector<std::tuple<std::string, json, std::string>>{
           {"tokenizer", 3, "model.tokenizer: expected a string, got 3"},
           {"max_position", 3, "model.max_position: expected an integer in [16, 16777216], got 3"},
           {"init_seed", nullptr, "model.init_seed: expected an integer, got null"}}) {
    json bad = config;
    bad["model"][key] = value;
    polar::write_json_file_atomic(dir + "/config.json", bad);
    EXPECT_THAT(load_error(dir), HasSubstr(expected)) << key;
    EXPECT_THAT(load_error(dir), HasSubstr(dir + "/config.json")) << key;
  }
}

TEST(RobustCheckpoint, StaleTemporariesOfDeadProcessesAreRemoved) {
  TempDir tmp;
  const std::string run = tmp / "run";
  const std::string dead = std::to_string(dead_pid());
  fs::create_directories(run + "/checkpoint-4.tmp-" + dead);
  fs::create_directories(run + "/checkpoint-2.old-" + dead);
  std::ofstream(run + "/config.json.tmp." + dead) << "{";
  fs::create_directories(run + "/checkpoint-6.tmp-1");  // pid 1 runs: a save in progress elsewhere
  fs::create_directories(run + "/checkpoint-8.tmp-" + std::to_string(::getpid()));
  fs::create_directories(run + "/checkpoint-7.staging");  // a sharded save that was killed
  fs::create_directories(run + "/checkpoint-3");
  fs::create_directories(run + "/checkpoint-5");
  polar::prune_checkpoints(run, 1);
  EXPECT_FALSE(fs::exists(run + "/checkpoint-7.staging"));
  EXPECT_FALSE(fs::exists(run + "/checkpoint-4.tmp-" + dead));
  EXPECT_FALSE(fs::exists(run + "/checkpoint-2.old-" + dead));
  EXPECT_FALSE(fs::exists(run + "/config.json.tmp." + dead));
  EXPECT_TRUE(fs::exists(run + "/checkpoint-6.tmp-1"));
  EXPECT_TRUE(fs::exists(run + "/checkpoint-8.tmp-" + std::to_string(::getpid())));
  EXPECT_FALSE(fs::exists(run + "/checkpoint-3"));
  EXPECT_TRUE(fs::exists(run + "/checkpoint-5"));
  EXPECT_EQ(polar::remove_stale_temporaries(run), 0);
}
