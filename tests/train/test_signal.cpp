// SIGINT/SIGTERM during `polar train`: the run saves a checkpoint, exits with 128+signal, and a
// --resume continues from that checkpoint to the end.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/tiny_data.h"
#include "polar/checkpoint/checkpoint.h"

namespace fs = std::filesystem;
using polar::testing::TempDir;

namespace {

int count_lines(const std::string& path) {
  std::ifstream in(path);
  int n = 0;
  std::string line;
  while (std::getline(in, line)) n += !line.empty();
  return n;
}

pid_t spawn_train(const std::string& config, const std::string& log, bool resume) {
  pid_t pid = ::fork();
  if (pid == 0) {
    FILE* out = std::freopen(log.c_str(), "w", stdout);
    (void)out;
    ::dup2(::fileno(stdout), 2);
    const char* bin = POLAR_BINARY_DIR "/polar";
    if (resume) {
      ::execl(bin, bin, "train", "--config", config.c_str(), "--resume",
              static_cast<char*>(nullptr));
    } else {
      ::execl(bin, bin, "train", "--config", config.c_str(), static_cast<char*>(nullptr));
    }
    ::_exit(127);
  }
  return pid;
}

}  // namespace

TEST(TrainSignal, SigintCheckpointsExits130AndResumes) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 64, 8);
  std::string config = tmp / "c.json";
  auto j =
      nlohmann::json::parse(polar::testing::tiny_train_config(tmp / "data", tmp / "run", 2000));
  j["run"]["checkpoint_every"] = 0;
  std::ofstream(config) << j.dump();

  pid_t pid = spawn_train(config, tmp / "log1.txt", false);
  ASSERT_GT(pid, 0);
  // Wait until a few steps are logged, then interrupt.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (count_lines(tmp / "run/metrics.jsonl") < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_GE(count_lines(tmp / "run/metrics.jsonl"), 3) << "training did not start";
  ::kill(pid, SIGINT);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by a signal instead of exiting cleanly";
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);

  auto latest = polar::find_latest_checkpoint(tmp / "run");
  ASSERT_TRUE(latest.has_value());
  auto state = polar::load_trainer_state(*latest);
  EXPECT_GE(state.step, 3);
  EXPECT_LT(state.step, 2000);
  EXPECT_EQ(count_lines(tmp / "run/metrics.jsonl"), state.step);
  EXPECT_TRUE(fs::exists(*latest + "/optimizer.pt"));
  EXPECT_FALSE(fs::exists(tmp / "run/final"));

  // Resume for a few more steps (stop_after_steps keeps the test short).
  j["run"]["stop_after_steps"] = 2;
  std::ofstream(config) << j.dump();
  pid = spawn_train(config, tmp / "log2.txt", true);
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(count_lines(tmp / "run/metrics.jsonl"), state.step + 2);
  EXPECT_TRUE(fs::exists(tmp / ("run/checkpoint-" + std::to_string(state.step + 2))));
}
