// Restarts under the launchers users run: the venv's torchrun (PyTorch's own, --no-python, with
// its static rendezvous and with --rdzv-backend c10d) and polar-run, --max-restarts 1, 2 CPU
// ranks on 127.0.0.1. One worker is SIGKILLed mid-run or at a named point of a checkpoint save
// (POLAR_KILL_AT); the restarted group must resume and end with the uninterrupted run's weights,
// bit for bit, with no staging directory left behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <thread>

#include "common/tiny_data.h"
#include "dist/dist_test_util.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using polar::testing::descendants;
using polar::testing::free_tcp_port;
using polar::testing::max_parameter_difference;
using polar::testing::polar_binary;
using polar::testing::polar_run_binary;
using polar::testing::process_env;
using polar::testing::Subprocess;
using polar::testing::TempDir;

namespace {

const char* kTorchrun = POLAR_SOURCE_DIR "/.venv/bin/torchrun";
constexpr int64_t kSteps = 24;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class LauncherRestart : public ::testing::Test {
 protected:
  // One dataset and one uninterrupted 2-rank run for the whole suite.
  static void SetUpTestSuite() {
    shared_ = std::make_unique<TempDir>();
    polar::testing::write_copy_task_dataset(*shared_ / "data", 96, 8);
    Subprocess clean({polar_run_binary(), "--nproc-per-node", "2", "--master-port",
                      std::to_string(free_tcp_port()), "--stop-grace-seconds", "3", "train",
                      "--config", config("clean")});
    clean_code_ = clean.wait(300s);
    clean_output_ = clean.output();
  }
  static void TearDownTestSuite() { shared_.reset(); }

  void SetUp() override { ASSERT_EQ(clean_code_, 0) << clean_output_; }

  static std::string config(const std::string& run) {
    auto j = nlohmann::json::parse(
        polar::testing::tiny_train_config(*shared_ / "data", *shared_ / run, kSteps));
    j["run"]["checkpoint_every"] = 4;
    j["run"]["keep_last"] = 3;
    j["train"]["dist_timeout_s"] = 30;
    const std::string path = *shared_ / (run + ".json");
    std::ofstream(path) << j.dump(2);
    return path;
  }
  static std::string run_dir(const std::string& run) { return *shared_ / run; }
  static std::string final_model(const std::string& run) {
    return *shared_ / (run + "/final/model.safetensors");
  }

  static std::vector<std::string> torchrun(const std::string& run, bool c10d) {
    const std::string port = std::to_string(free_tcp_port());
    std::vector<std::string> argv{kTorchrun, "--nnodes",       "1", "--nproc-per-node",
                                  "2",       "--max-restarts", "1"};
    if (c10d) {
      argv.insert(argv.end(), {"--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:" + port});
    } else {
      argv.insert(argv.end(), {"--master-addr", "127.0.0.1", "--master-port", port});
    }
    argv.insert(argv.end(), {"--no-python", polar_binary(), "train", "--config", config(run)});
    return argv;
  }
  static std::vector<std::string> polar_run(const std::string& run) {
    return {polar_run_binary(),
            "--nproc-per-node",
            "2",
            "--max-restarts",
            "1",
            "--master-port",
            std::to_string(free_tcp_port()),
            "--stop-grace-seconds",
            "3",
            "train",
            "--config",
            config(run)};
  }

  // The restarted run ends with the clean run's weights and nothing half-written beside them.
  static void expect_resumed_exactly(Subprocess& launcher, const std::string& run) {
    const int code = launcher.wait(300s);
    ASSERT_EQ(code, 0) << launcher.output();
    EXPECT_TRUE(contains(launcher.output(), "resumed from")) << launcher.output();
    EXPECT_EQ(max_parameter_difference(final_model("clean"), final_model(run)), 0.0);
    for (const auto& e : fs::directory_iterator(run_dir(run))) {
      const std::string name = e.path().filename().string();
      EXPECT_EQ(name.find(".staging"), std::string::npos) << name;
      EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
    }
  }

  static std::unique_ptr<TempDir> shared_;
  static int clean_code_;
  static std::string clean_output_;
};

std::unique_ptr<TempDir> LauncherRestart::shared_;
int LauncherRestart::clean_code_ = -1;
std::string LauncherRestart::clean_output_;

// Waits for `run_dir/checkpoint-<step>` and SIGKILLs the worker whose RANK is `rank`.
pid_t kill_rank_after_checkpoint(Subprocess& launcher, const std::string& run_dir, int step,
                                 const std::string& rank) {
  const std::string marker =
      run_dir + "/checkpoint-" + std::to_string(step) + "/trainer_state.json";
  const auto deadline = std::chrono::steady_clock::now() + 180s;
  while (!fs::exists(marker) && launcher.running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(2ms);
  }
  for (pid_t pid : descendants(launcher.pid())) {
    if (process_env(pid, "RANK") == rank && process_env(pid, "TORCHELASTIC_RESTART_COUNT") == "0") {
      kill(pid, SIGKILL);
      return pid;
    }
  }
  return -1;
}

bool have_torchrun() { return fs::exists(kTorchrun); }

}  // namespace

TEST_F(LauncherRestart, TorchrunStaticRendezvousResumesAfterAWorkerKilledMidRun) {
  if (!have_torchrun()) GTEST_SKIP() << kTorchrun << " not found (scripts/setup.sh installs it)";
  Subprocess run(torchrun("static_midrun", false));
  ASSERT_GT(kill_rank_after_checkpoint(run, run_dir("static_midrun"), 8, "1"), 0) << run.output();
  expect_resumed_exactly(run, "static_midrun");
}

TEST_F(LauncherRestart, TorchrunC10dRendezvousResumesAfterAWorkerKilledMidRun) {
  if (!have_torchrun()) GTEST_SKIP() << kTorchrun << " not found (scripts/setup.sh installs it)";
  Subprocess run(torchrun("c10d_midrun", true));
  ASSERT_GT(kill_rank_after_checkpoint(run, run_dir("c10d_midrun"), 8, "0"), 0) << run.output();
  expect_resumed_exactly(run, "c10d_midrun");
}

TEST_F(LauncherRestart, TorchrunResumesAfterAWorkerKilledMidSave) {
  if (!have_torchrun()) GTEST_SKIP() << kTorchrun << " not found (scripts/setup.sh installs it)";
  // Rank 0 dies with checkpoint-8 fully written but not yet renamed into place.
  Subprocess run(torchrun("static_midsave", false),
                 {{"POLAR_KILL_AT", "save.before_commit@2"}, {"POLAR_KILL_RANK", "0"}});
  expect_resumed_exactly(run, "static_midsave");
  EXPECT_TRUE(contains(run.output(), "resumed from " + run_dir("static_midsave") + "/checkpoint-4"))
      << run.output();
}

TEST_F(LauncherRestart, PolarRunResumesAfterWorkersKilledMidRunAndMidSave) {
  Subprocess midrun(polar_run("polar_run_midrun"));
  ASSERT_GT(kill_rank_after_checkpoint(midrun, run_dir("polar_run_midrun"), 12, "0"), 0)
      << midrun.output();
  expect_resumed_exactly(midrun, "polar_run_midrun");
  // Rank 1 dies after writing its optimizer state into checkpoint-8's staging directory.
  Subprocess midsave(polar_run("polar_run_midsave"),
                     {{"POLAR_KILL_AT", "save.shard_written@2"}, {"POLAR_KILL_RANK", "1"}});
  expect_resumed_exactly(midsave, "polar_run_midsave");
  EXPECT_TRUE(contains(midsave.output(), "was killed by signal 9")) << midsave.output();
}
