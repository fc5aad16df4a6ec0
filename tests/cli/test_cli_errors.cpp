// The `polar` binary on bad input: a message naming the file and key, exit 1, never a signal
// death or "unexpected error"; SIGTERM at any moment of start-up exits 143.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/tiny_checkpoint.h"
#include "common/tiny_data.h"
#include "fuzz/fuzz_util.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/config/train_config.h"

namespace fs = std::filesystem;
using nlohmann::json;
using polar::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

const std::string kPolar = POLAR_BINARY_DIR "/polar";

polar::fuzz::ProcessResult polar_run(const TempDir& tmp, std::vector<std::string> args) {
  args.insert(args.begin(), kPolar);
  return polar::fuzz::run_process(args, {{"OMP_NUM_THREADS", "1"}}, 240, tmp / "log.txt");
}

void expect_refusal(const polar::fuzz::ProcessResult& r, const std::string& expected) {
  EXPECT_FALSE(r.signaled) << "signal " << r.signal << "\n" << r.output;
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr(expected));
  EXPECT_THAT(r.output, Not(HasSubstr("unexpected error")));
}

std::string write_config(const TempDir& tmp, const std::string& text) {
  const std::string path = tmp / "c.json";
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST(RobustCli, HugeShapesAreRefusedBeforeAllocation) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 8, 0);
  const std::string config =
      write_config(tmp, polar::testing::tiny_train_config(tmp / "data", tmp / "run", 2));
  expect_refusal(
      polar_run(tmp, {"train", "--config", config, "--set", "model.vocab_size=2147483648"}),
      "model.vocab_size: expected an integer in [1, 16777216], got 2147483648");
  expect_refusal(polar_run(tmp, {"train", "--config", config, "--set",
                                 "model.vocab_size=4611686018427387904"}),
                 "model.vocab_size");
  expect_refusal(polar_run(tmp, {"train", "--config", config, "--set", "model.hidden_size=65536",
                                 "--set", "model.num_heads=1", "--set", "model.num_kv_heads=1"}),
                 "GiB of memory; the largest part is the layers");
  EXPECT_FALSE(fs::exists(tmp / "run/final"));
}

TEST(RobustCli, BadConfigFilesNameTheFile) {
  TempDir tmp;
  const std::string config = write_config(tmp, R"({"train": {"lr": 1e999}})");
  expect_refusal(polar_run(tmp, {"train", "--config", config}), config + ": invalid JSON");
  write_config(tmp, "[1, 2]");
  expect_refusal(polar_run(tmp, {"train", "--config", config, "--set", "train.lr=0.1"}),
                 config + ": expected a JSON object at the top level, got array");
}

TEST(RobustCli, EmptyInputAndNoGroupsNameTheFile) {
  TempDir tmp;
  const std::string input = tmp / "empty.jsonl";
  std::ofstream(input) << "";
  expect_refusal(polar_run(tmp, {"data", "preference", "--input", input, "--tokenizer",
                                 polar::testing::tiny_tokenizer_dir(), "--output", tmp / "out"}),
                 input + ": empty file");
  std::ofstream(input)
      << R"({"prompt":"p","reference":"r","chosen":"a","rejected":"b","category":1e999})"
      << "\n";
  expect_refusal(polar_run(tmp, {"data", "preference", "--input", input, "--tokenizer",
                                 polar::testing::tiny_tokenizer_dir(), "--output", tmp / "out",
                                 "--skip-invalid"}),
                 "no groups to write: " + input +
                     ": all 1 lines were invalid and skipped ({\"invalid_json\":1})");
  EXPECT_FALSE(fs::exists(tmp / "out"));
}

TEST(RobustCli, EvalRefusesNonFiniteWeightsAndRewards) {
  TempDir tmp;
  const std::string ckpt = polar::testing::write_tiny_checkpoint(
      tmp / "ckpt", false, [](polar::RewardModel& m) { m->parameters().back().fill_(NAN); });
  const std::string data = tmp / "prefs.jsonl";
  std::ofstream(data)
      << R"({"prompt":"how many","reference":"the sea","chosen":"a tree","rejected":"yes"})"
      << "\n";
  const std::string out = tmp / "eval.json";
  expect_refusal(polar_run(tmp, {"eval", "--checkpoint", ckpt, "--data", data, "--output", out}),
                 "tensor \"score.weight\" holds 32 non-finite values");
  expect_refusal(polar_run(tmp, {"eval", "--checkpoint", ckpt, "--data", data, "--output", out,
                                 "--no-verify"}),
                 data + " scored by " + ckpt + ": line 1: the model gave a non-finite reward");
  expect_refusal(
      polar_run(tmp, {"score", "--checkpoint", ckpt, "--input", tmp / "s.jsonl", "--no-verify"}),
      "s.jsonl: cannot open file");
  EXPECT_FALSE(fs::exists(out));
}

TEST(RobustCli, SigtermRightAfterStartExits143) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 16, 0);
  // Enough steps that no machine finishes the run before the last signal (1.5 s).
  const std::string config =
      write_config(tmp, polar::testing::tiny_train_config(tmp / "data", tmp / "run", 100000));
  // From 0.4 s on: before the program runs at all, the dynamic loader maps LibTorch (~0.2 s on a
  // loaded 2-core machine), and a signal then still terminates the process.
  for (int delay_ms : {400, 800, 1500}) {
    pid_t pid = ::fork();
    if (pid == 0) {
      FILE* out = std::freopen((tmp / "sig.log").c_str(), "w", stdout);
      (void)out;
      ::execl(kPolar.c_str(), kPolar.c_str(), "train", "--config", config.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(pid, SIGTERM);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status))
        << "killed by signal " << WTERMSIG(status) << " after " << delay_ms << " ms";
    if (WIFEXITED(status)) {
      EXPECT_EQ(WEXITSTATUS(status), 143) << delay_ms << " ms";
    }
    EXPECT_FALSE(fs::exists(tmp / "run/final"));
  }
}
