// `polar bench` through the binary: both MFU lines, the JSON it saves, and `--baseline` comparing
// a run with that file (bad baseline files refused before the run, naming the file and key).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "common/tiny_data.h"
#include "fuzz/fuzz_util.h"
#include "polar/common/json_config.h"

using nlohmann::json;
using polar::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

polar::fuzz::ProcessResult polar_bench(const TempDir& tmp, std::vector<std::string> args) {
  std::ofstream(tmp / "c.json") << polar::testing::tiny_train_config(tmp / "data", tmp / "run", 1);
  // One 2-group step of 32-token sequences on the tiny model.
  std::vector<std::string> argv{POLAR_BINARY_DIR "/polar", "bench", "--config", tmp / "c.json"};
  for (const char* a :
       {"--steps", "1", "--warmup", "0", "--seq-len", "32", "--set", "train.batch_groups=2"})
    argv.push_back(a);
  argv.insert(argv.end(), args.begin(), args.end());
  return polar::fuzz::run_process(argv, {{"OMP_NUM_THREADS", "1"}}, 240, tmp / "log.txt");
}

}  // namespace

TEST(BenchCommand, PrintsBothMfuLinesAndComparesWithASavedRun) {
  TempDir tmp;
  const auto first = polar_bench(tmp, {"--output", tmp / "base.json"});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_THAT(first.output, HasSubstr("MFU (measured peak)"));
  EXPECT_THAT(first.output, HasSubstr("MFU (spec peak)       no spec peak for the CPU"));
  const json saved = polar::read_json_file(tmp / "base.json");
  EXPECT_EQ(saved.at("device_name"), "cpu");
  EXPECT_TRUE(saved.at("spec_peak_gflops").is_null());
  EXPECT_TRUE(saved.at("spec_name").is_null());
  EXPECT_GT(saved.at("mfu").get<double>(), 0);

  const auto same = polar_bench(tmp, {"--baseline", tmp / "base.json"});
  ASSERT_EQ(same.exit_code, 0) << same.output;
  EXPECT_THAT(same.output, HasSubstr("compared with " + tmp / "base.json"));
  EXPECT_THAT(same.output, HasSubstr("tokens/s per peak GFLOP/s"));
  EXPECT_THAT(same.output, Not(HasSubstr("WARNING")));

  const auto bigger = polar_bench(
      tmp, {"--baseline", tmp / "base.json", "--set", "model.num_layers=3", "--negatives", "2"});
  ASSERT_EQ(bigger.exit_code, 0) << bigger.output;
  EXPECT_THAT(bigger.output, HasSubstr("WARNING: the runs differ in parameters: baseline " +
                                       saved.at("parameters").dump()));
  EXPECT_THAT(bigger.output, HasSubstr("WARNING: the runs differ in tokens/step"));
}

TEST(BenchCommand, BadBaselineIsRefusedBeforeTheRun) {
  TempDir tmp;
  const auto expect_refused = [&](const std::string& expected) {
    const auto r = polar_bench(tmp, {"--baseline", tmp / "base.json"});
    EXPECT_FALSE(r.signaled) << r.output;
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr(expected));
    EXPECT_THAT(r.output, Not(HasSubstr("tokens/s")));  // no benchmark ran
  };
  expect_refused(tmp / "base.json" + ": cannot open file");
  std::ofstream(tmp / "base.json") << "{\"device\": ";
  expect_refused(tmp / "base.json" + ": invalid JSON");
  std::ofstream(tmp / "base.json") << R"({"device": "cpu", "precision": "fp32"})";
  expect_refused(tmp / "base.json" + ": missing key \"parameters\"");
}
