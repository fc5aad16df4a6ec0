// End-to-end data-parallel training on CPU (Gloo, 127.0.0.1) with build/polar and build/polar-run
// as subprocesses: 2 ranks equal 1 rank, two single-process "nodes" equal one 2-process node, a
// killed worker stops the launcher cleanly, a restart resumes to the uninterrupted result, and
// a missing peer or a wrong port fails within the timeout.
#include <gtest/gtest.h>
#include <signal.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/tiny_data.h"
#include "dist/dist_test_util.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/io/safetensors.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using polar::testing::descendants;
using polar::testing::free_tcp_port;
using polar::testing::max_parameter_difference;
using polar::testing::polar_binary;
using polar::testing::polar_run_binary;
using polar::testing::process_alive;
using polar::testing::process_env;
using polar::testing::Subprocess;
using polar::testing::TempDir;

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Copy-task data and a tiny-model config per run (2 layers, hidden 32, 8 groups per step).
class DdpTrain : public ::testing::Test {
 protected:
  void SetUp() override { polar::testing::write_copy_task_dataset(tmp_ / "data", 96, 8); }

  std::string config(const std::string& run, int64_t steps, int64_t checkpoint_every = 4) {
    auto j =
        nlohmann::json::parse(polar::testing::tiny_train_config(tmp_ / "data", tmp_ / run, steps));
    j["run"]["checkpoint_every"] = checkpoint_every;
    j["run"]["keep_last"] = 3;
    j["train"]["dist_timeout_s"] = 30;
    const std::string path = tmp_ / (run + ".json");
    std::ofstream(path) << j.dump(2);
    return path;
  }
  std::string final_model(const std::string& run) {
    return tmp_ / (run + "/final/model.safetensors");
  }

  // `polar-run [flags] train --config ...`
  std::vector<std::string> launch(const std::string& cfg, std::vector<std::string> flags,
                                  std::vector<std::string> train_args = {}) {
    std::vector<std::string> argv{polar_run_binary()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.insert(argv.end(), {"--stop-grace-seconds", "3", "train", "--config", cfg});
    argv.insert(argv.end(), train_args.begin(), train_args.end());
    return argv;
  }

  TempDir tmp_;
};

int run_to_end(Subprocess& run) { return run.wait(300s); }

struct Killed {
  pid_t victim = -1;
  std::vector<pid_t> processes;  // every descendant of the launcher just before the kill
};

// Waits for `run_dir/checkpoint-<step>` and then SIGKILLs the worker whose RANK is `rank`.
Killed kill_rank_after_checkpoint(Subprocess& launcher, const std::string& run_dir, int step,
                                  const std::string& rank) {
  const std::string marker =
      run_dir + "/checkpoint-" + std::to_string(step) + "/trainer_state.json";
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (!fs::exists(marker) && launcher.running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(2ms);
  }
  Killed killed;
  killed.processes = descendants(launcher.pid());
  for (pid_t pid : killed.processes) {
    if (process_env(pid, "RANK") == rank) {
      kill(pid, SIGKILL);
      killed.victim = pid;
      break;
    }
  }
  return killed;
}

}  // namespace

TEST_F(DdpTrain, TwoRanksWithHalfTheBatchEqualOneRankWithAllOfIt) {
  // lr 1e-3: AdamW turns fp32 rounding noise in near-zero gradients into updates of up to lr
  // (m / sqrt(v) of noise), so at the tiny config's lr the two runs drift apart by ~7e-5 in 20
  // steps even though each step's gradients agree to rounding; at 1e-3 they stay within ~4e-7.
  const std::vector<std::string> lr{"--set", "train.lr=1e-3"};
  std::vector<std::string> single{polar_binary(), "train", "--config", config("one", 20)};
  single.insert(single.end(), lr.begin(), lr.end());
  Subprocess one(single);
  ASSERT_EQ(run_to_end(one), 0) << one.output();
  Subprocess two(launch(config("two", 20),
                        {"--nproc-per-node", "2", "--master-port", std::to_string(free_tcp_port())},
                        lr));
  ASSERT_EQ(run_to_end(two), 0) << two.output();
  EXPECT_TRUE(contains(two.output(), "world size 2")) << two.output();
  // Summation order differs (per-rank sums, then the all-reduce), so not bit-exact.
  EXPECT_LT(max_parameter_difference(final_model("one"), final_model("two")), 1e-5);
}

TEST_F(DdpTrain, TwoSingleProcessNodesEqualOneTwoProcessNode) {
  Subprocess local(launch(config("local", 20), {"--nproc-per-node", "2", "--master-port",
                                                std::to_string(free_tcp_port())}));
  ASSERT_EQ(run_to_end(local), 0) << local.output();
  const std::string cfg = config("nodes", 20);
  const std::string port = std::to_string(free_tcp_port());
  Subprocess node0(launch(
      cfg, {"--nnodes", "2", "--node-rank", "0", "--nproc-per-node", "1", "--master-port", port}));
  Subprocess node1(launch(
      cfg, {"--nnodes", "2", "--node-rank", "1", "--nproc-per-node", "1", "--master-port", port}));
  ASSERT_EQ(run_to_end(node0), 0) << node0.output();
  ASSERT_EQ(run_to_end(node1), 0) << node1.output();
  EXPECT_TRUE(contains(node1.output(), "[rank1]: ")) << node1.output();
  // Same ranks, same data, same reduction: identical parameters.
  EXPECT_EQ(max_parameter_difference(final_model("local"), final_model("nodes")), 0.0);
}

TEST_F(DdpTrain, KilledWorkerStopsTheLauncherAndLeavesTheLastCheckpointIntact) {
  Subprocess run(launch(config("killed", 400), {"--nproc-per-node", "2", "--master-port",
                                                std::to_string(free_tcp_port())}));
  const Killed killed = kill_rank_after_checkpoint(run, tmp_ / "killed", 8, "1");
  ASSERT_GT(killed.victim, 0) << run.output();
  ASSERT_GE(killed.processes.size(), 2u);
  const auto killed_at = std::chrono::steady_clock::now();
  const int code = run.wait(60s);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  EXPECT_NE(code, 0) << run.output();
  EXPECT_NE(code, -1000) << "the launcher did not exit";
  EXPECT_LT(took, 30.0);
  EXPECT_TRUE(contains(run.output(), "rank 1 (local rank 1, pid " + std::to_string(killed.victim) +
                                         ") was killed by signal 9"))
      << run.output();
  for (pid_t pid : killed.processes)
    EXPECT_FALSE(process_alive(pid)) << "pid " << pid << " outlived the launcher";

  const auto latest = polar::find_latest_checkpoint(tmp_ / "killed");
  ASSERT_TRUE(latest.has_value());
  const auto state = polar::load_trainer_state(*latest);
  EXPECT_EQ(fs::path(*latest).filename().string(), "checkpoint-" + std::to_string(state.step));
  EXPECT_GE(state.step, 8);
  const auto weights =
      polar::io::SafetensorsFile::open(*latest + "/model.safetensors");  // validates the file
  EXPECT_FALSE(weights.tensors().empty());
}

TEST_F(DdpTrain, RestartAfterAKilledWorkerResumesToTheUninterruptedResult) {
  const int steps = 48;
  Subprocess clean(launch(config("clean", steps), {"--nproc-per-node", "2", "--master-port",
                                                   std::to_string(free_tcp_port())}));
  ASSERT_EQ(run_to_end(clean), 0) << clean.output();

  Subprocess run(
      launch(config("restarted", steps), {"--nproc-per-node", "2", "--max-restarts", "1",
                                          "--master-port", std::to_string(free_tcp_port())}));
  ASSERT_GT(kill_rank_after_checkpoint(run, tmp_ / "restarted", 8, "1").victim, 0) << run.output();
  ASSERT_EQ(run_to_end(run), 0) << run.output();
  EXPECT_TRUE(contains(run.output(), "restarting the worker group (restart 1 of 1)"))
      << run.output();
  EXPECT_TRUE(contains(run.output(), "resumed from")) << run.output();
  EXPECT_EQ(max_parameter_difference(final_model("clean"), final_model("restarted")), 0.0);
}

TEST_F(DdpTrain, MissingPeerOrWrongPortFailsWithinTheTimeout) {
  const std::string cfg = config("alone", 5);
  const std::string port = std::to_string(free_tcp_port());
  // Node 0 of 2 alone: rank 0 hosts the store and waits for rank 1, which never comes.
  Subprocess missing(launch(cfg, {"--nnodes", "2", "--node-rank", "0", "--master-port", port},
                            {"--set", "train.dist_timeout_s=3"}));
  EXPECT_NE(missing.wait(120s), 0) << missing.output();
  EXPECT_LT(missing.seconds(), 20.0);
  EXPECT_TRUE(contains(missing.output(), "rendezvous failed on rank 0")) << missing.output();
  EXPECT_TRUE(contains(missing.output(), "not all 2 ranks joined within 3 s")) << missing.output();
  // Node 1 of 2 pointed at a port where no rank 0 listens.
  Subprocess wrong(launch(cfg, {"--nnodes", "2", "--node-rank", "1", "--master-port", port},
                          {"--set", "train.dist_timeout_s=3"}));
  EXPECT_NE(wrong.wait(120s), 0) << wrong.output();
  EXPECT_LT(wrong.seconds(), 20.0);
  EXPECT_TRUE(contains(wrong.output(), "could not join the store of rank 0 at 127.0.0.1:" + port))
      << wrong.output();
}
