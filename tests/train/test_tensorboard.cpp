// TensorBoard event files: CRC-32C framing against published check values, and TensorBoard's own
// readers (tests/train/tensorboard_reader.py, the tensorboard package in the project venv) reading
// back every number of metrics.jsonl at every step of a training run, each step once after a
// resume from a checkpoint older than the last logged step. Skipped when the venv python or its
// tensorboard package is missing (scripts/setup.sh installs both).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/tiny_data.h"
#include "polar/common/json_config.h"
#include "polar/config/train_config.h"
#include "polar/train/event_writer.h"
#include "polar/train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using polar::testing::TempDir;

namespace {

const char* kPython = POLAR_SOURCE_DIR "/.venv/bin/python";
const char* kReader = POLAR_SOURCE_DIR "/tests/train/tensorboard_reader.py";

bool tensorboard_available() {
  if (!fs::exists(kPython)) return false;
  const std::string cmd = std::string(kPython) + " -c 'import tensorboard' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// What TensorBoard's readers keep of `logdir`: {"scalars"|"tensors": {tag: [[step, value]...]}}.
json read_with_tensorboard(const std::string& logdir, const std::string& work) {
  const std::string out = work + "/tensorboard.json", log = work + "/tensorboard.log";
  const std::string cmd =
      std::string(kPython) + " " + kReader + " " + logdir + " " + out + " > " + log + " 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream in(log);
    std::ostringstream ss;
    ss << in.rdbuf();
    ADD_FAILURE() << "tensorboard_reader.py failed:\n" << ss.str();
    return json::object();
  }
  return polar::read_json_file(out);
}

std::vector<json> read_metrics(const std::string& run_dir) {
  std::vector<json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// Every number of every metrics line appears under its tag exactly once at its step, with the
// value TensorBoard stores (float32), in both readers; no other tag or step appears.
void expect_matches_metrics(const json& read, const std::vector<json>& metrics) {
  std::map<std::string, std::map<int64_t, float>> want;
  for (const json& rec : metrics)
    for (const auto& [key, value] : rec.items())
      if (key != "step" && value.is_number())
        want[polar::metrics_scalar_tag(key)][rec["step"].get<int64_t>()] =
            static_cast<float>(value.get<double>());
  ASSERT_FALSE(want.empty());
  for (const char* reader : {"scalars", "tensors"}) {
    ASSERT_TRUE(read.contains(reader)) << read.dump();
    const json& got = read[reader];
    std::set<std::string> tags;
    for (const auto& [tag, points] : got.items()) tags.insert(tag);
    std::set<std::string> want_tags;
    for (const auto& [tag, points] : want) want_tags.insert(tag);
    EXPECT_EQ(tags, want_tags) << reader;
    for (const auto& [tag, points] : want) {
      if (!got.contains(tag)) continue;
      const json& seen = got[tag];
      ASSERT_EQ(seen.size(), points.size()) << reader << " " << tag << ": " << seen.dump();
      size_t i = 0;
      for (const auto& [step, value] : points) {  // in step order, once each
        EXPECT_EQ(seen[i][0].get<int64_t>(), step) << reader << " " << tag;
        EXPECT_EQ(seen[i][1].get<float>(), value) << reader << " " << tag << " step " << step;
        ++i;
      }
    }
  }
}

polar::TrainConfig tiny_config(const TempDir& tmp, const std::string& run, int64_t steps,
                               const std::vector<std::string>& overrides) {
  const std::string path = tmp / (run + ".json");
  std::ofstream(path) << polar::testing::tiny_train_config(tmp / "data", tmp / run, steps);
  return polar::load_train_config(path, overrides);
}

}  // namespace

TEST(EventWriter, Crc32cCheckValues) {
  // RFC 3720 B.4 and the CRC catalogue's check value ("123456789").
  const std::string digits = "123456789";
  EXPECT_EQ(polar::crc32c(digits.data(), digits.size()), 0xe3069283u);
  const std::string zeros(32, '\0'), ones(32, '\xff');
  EXPECT_EQ(polar::crc32c(zeros.data(), zeros.size()), 0x8a9136aau);
  EXPECT_EQ(polar::crc32c(ones.data(), ones.size()), 0x62a8ab43u);
  std::string ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<char>(i);
  EXPECT_EQ(polar::crc32c(ascending.data(), ascending.size()), 0x46dd794eu);
  // Continuing from a prefix's CRC gives the whole buffer's.
  EXPECT_EQ(polar::crc32c(digits.data() + 4, 5, polar::crc32c(digits.data(), 4)), 0xe3069283u);
  EXPECT_EQ(polar::metrics_scalar_tag("eval_accuracy"), "eval/accuracy");
  EXPECT_EQ(polar::metrics_scalar_tag("grad_norm"), "train/grad_norm");
}

// What TensorBoard does with a restart marker: a later file starting at step 6 replaces what an
// earlier one logged at steps >= 6, and keeps steps < 6; both files open within one second.
TEST(EventWriter, RestartMarkerPurgesLaterStepsOfEarlierFiles) {
  if (!tensorboard_available()) GTEST_SKIP() << kPython << " or its tensorboard package is missing";
  TempDir tmp;
  const std::string dir = tmp / "tb";
  std::string first, second;
  {
    polar::EventWriter w(dir, 1, 0);
    for (int step = 1; step <= 10; ++step) w.add_scalar("train/x", step, step);
    first = w.path();
  }
  {
    polar::EventWriter w(dir, 6, 0);
    for (int step = 6; step <= 8; ++step) w.add_scalar("train/x", 100 + step, step);
    second = w.path();
  }
  EXPECT_LT(fs::path(first).filename(), fs::path(second).filename()) << "read in name order";
  const json read = read_with_tensorboard(dir, tmp.path());
  const json want = {{1, 1.0}, {2, 2.0},   {3, 3.0},   {4, 4.0},
                     {5, 5.0}, {6, 106.0}, {7, 107.0}, {8, 108.0}};
  EXPECT_EQ(read["scalars"]["train/x"], want);
  EXPECT_EQ(read["tensors"]["train/x"], want);
}

TEST(EventWriter, TrainRunReadsBackEveryScalarOnceAcrossAResume) {
  if (!tensorboard_available()) GTEST_SKIP() << kPython << " or its tensorboard package is missing";
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 96, 16);
  const std::vector<std::string> base = {"eval.every=5", "run.checkpoint_every=6",
                                         "run.keep_last=5"};
  // An uninterrupted run: every number of metrics.jsonl, at every step.
  polar::Trainer(tiny_config(tmp, "full", 20, base), false).run();
  const std::vector<json> full = read_metrics(tmp / "full");
  ASSERT_EQ(full.size(), 20u);
  ASSERT_TRUE(full[4].contains("eval_accuracy"));
  ASSERT_TRUE(full[0].contains("tokens_per_s") && full[0].contains("peak_memory_mib"));
  expect_matches_metrics(read_with_tensorboard(tmp / "full/tensorboard", tmp.path()), full);

  // A run that logged steps 1-16 but whose newest checkpoint is 12 (the process died between
  // checkpoints): the resumed run logs 13-20 again, and TensorBoard must show each step once,
  // with the resumed run's values (step_s and tokens_per_s differ between the two runs).
  std::vector<std::string> split = base;
  split.push_back("run.stop_after_steps=16");
  polar::Trainer(tiny_config(tmp, "split", 20, split), false).run();
  ASSERT_TRUE(fs::exists(tmp / "split/checkpoint-12"));
  fs::remove_all(tmp / "split/checkpoint-16");
  polar::Trainer(tiny_config(tmp, "split", 20, base), true).run();
  ASSERT_TRUE(fs::exists(tmp / "split/final"));
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(tmp / "split/tensorboard"))
    files += e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  EXPECT_EQ(files, 2u);
  const std::vector<json> resumed = read_metrics(tmp / "split");
  ASSERT_EQ(resumed.size(), 20u);
  expect_matches_metrics(read_with_tensorboard(tmp / "split/tensorboard", tmp.path()), resumed);
}

TEST(EventWriter, OffByConfig) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 24, 8);
  polar::Trainer(tiny_config(tmp, "run", 2, {"run.tensorboard=false"}), false).run();
  EXPECT_TRUE(fs::exists(tmp / "run/metrics.jsonl"));
  EXPECT_FALSE(fs::exists(tmp / "run/tensorboard"));
}
