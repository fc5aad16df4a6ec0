// polar-run with shell commands as workers: the environment it gives them, rank prefixes, log
// files, failure handling (the failed rank and exit code, nobody left running), restarts, signal
// forwarding, dying with the launcher, and usage errors.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "common/tiny_data.h"
#include "dist/dist_test_util.h"

using namespace std::chrono_literals;
using polar::testing::descendants;
using polar::testing::free_tcp_port;
using polar::testing::polar_run_binary;
using polar::testing::process_alive;
using polar::testing::Subprocess;
using polar::testing::TempDir;

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::vector<std::string> launcher(std::vector<std::string> flags, const std::string& script) {
  std::vector<std::string> argv{polar_run_binary()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.insert(argv.end(), {"--", "sh", "-c", script});
  return argv;
}

std::vector<pid_t> read_pids(const TempDir& dir, const std::vector<std::string>& names) {
  std::vector<pid_t> pids;
  for (const auto& name : names) {
    std::ifstream in(dir / name);
    pid_t pid = 0;
    if (in >> pid) pids.push_back(pid);
  }
  return pids;
}

bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

}  // namespace

TEST(PolarRun, GivesEachWorkerItsRankEnvironmentAndPrefixesItsLines) {
  TempDir logs;
  const std::string port = std::to_string(free_tcp_port());
  Subprocess run(
      launcher({"--nnodes", "2", "--node-rank", "1", "--nproc-per-node", "2", "--master-addr",
                "10.9.8.7", "--master-port", port, "--log-dir", logs.path()},
               "echo env $RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $GROUP_RANK $MASTER_ADDR "
               "$MASTER_PORT $TORCHELASTIC_RESTART_COUNT; echo to-stderr >&2; printf no-newline"));
  ASSERT_EQ(run.wait(30s), 0) << run.output();
  const std::string& out = run.output();
  EXPECT_TRUE(contains(out, "[rank2]: env 2 0 4 2 1 10.9.8.7 " + port + " 0\n")) << out;
  EXPECT_TRUE(contains(out, "[rank3]: env 3 1 4 2 1 10.9.8.7 " + port + " 0\n")) << out;
  EXPECT_TRUE(contains(out, "[rank3]: to-stderr\n")) << out;
  EXPECT_TRUE(contains(out, "[rank2]: no-newline\n")) << out;
  std::ifstream log(logs / "attempt_0/rank_3.log");
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_TRUE(contains(text.str(), "env 3 1 4 2 1")) << text.str();
  EXPECT_FALSE(contains(text.str(), "[rank3]")) << "log files hold the worker's own lines";
}

TEST(PolarRun, FailedWorkerStopsTheGroupAndNamesRankAndExitCode) {
  TempDir dir;
  // Rank 0 ignores SIGTERM (so only SIGKILL stops it) and has a child of its own; rank 1 fails.
  const std::string script =
      "if [ $RANK = 1 ]; then sleep 0.5; exit 3; fi; trap '' TERM; sleep 300 & echo $! > " +
      dir.path() + "/child.pid; echo $$ > " + dir.path() + "/worker.pid; wait";
  Subprocess run(launcher({"--nproc-per-node", "2", "--master-port",
                           std::to_string(free_tcp_port()), "--stop-grace-seconds", "1"},
                          script));
  ASSERT_TRUE(wait_for(
      [&] {
        return read_pids(dir, {"child.pid", "worker.pid"}).size() == 2;
      },
      10s));
  const auto pids = read_pids(dir, {"child.pid", "worker.pid"});
  EXPECT_EQ(run.wait(30s), 3) << run.output();
  EXPECT_LT(run.seconds(), 10.0);
  EXPECT_TRUE(contains(run.output(), "rank 1 (local rank 1, pid")) << run.output();
  EXPECT_TRUE(contains(run.output(), "failed: rank 1 exited with code 3")) << run.output();
  EXPECT_TRUE(contains(run.output(), "sending SIGKILL")) << run.output();
  for (pid_t pid : pids)
    EXPECT_TRUE(wait_for([&] { return !process_alive(pid); }, 2s)) << "pid " << pid << " survived";
}

TEST(PolarRun, RestartsTheGroupWithARisingRestartCount) {
  const std::string script =
      "if [ $RANK = 1 ] && [ $TORCHELASTIC_RESTART_COUNT -lt 2 ]; then exit 5; fi; "
      "echo attempt $TORCHELASTIC_RESTART_COUNT of $TORCHELASTIC_MAX_RESTARTS done";
  Subprocess run(
      launcher({"--nproc-per-node", "2", "--master-port", std::to_string(free_tcp_port()),
                "--max-restarts", "2", "--stop-grace-seconds", "1"},
               script));
  ASSERT_EQ(run.wait(30s), 0) << run.output();
  EXPECT_TRUE(contains(run.output(), "restarting the worker group (restart 1 of 2)"))
      << run.output();
  EXPECT_TRUE(contains(run.output(), "restarting the worker group (restart 2 of 2)"))
      << run.output();
  EXPECT_TRUE(contains(run.output(), "[rank0]: attempt 2 of 2 done")) << run.output();
  EXPECT_TRUE(contains(run.output(), "[rank1]: attempt 2 of 2 done")) << run.output();

  Subprocess exhausted(
      launcher({"--nproc-per-node", "2", "--master-port", std::to_string(free_tcp_port()),
                "--max-restarts", "1", "--stop-grace-seconds", "1"},
               script));
  EXPECT_EQ(exhausted.wait(30s), 5) << exhausted.output();
  EXPECT_TRUE(
      contains(exhausted.output(), "failed: rank 1 exited with code 5 and no restarts are left"))
      << exhausted.output();
}

TEST(PolarRun, ForwardsSigtermToTheWorkers) {
  const std::string script =
      "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.05; done";
  Subprocess run(launcher(
      {"--nproc-per-node", "2", "--master-port", std::to_string(free_tcp_port())}, script));
  ASSERT_TRUE(wait_for(
      [&] {
        return contains(run.output(), "[rank0]: ready") && contains(run.output(), "[rank1]: ready");
      },
      10s))
      << run.output();
  kill(run.pid(), SIGTERM);
  EXPECT_EQ(run.wait(20s), 128 + SIGTERM) << run.output();
  EXPECT_TRUE(contains(run.output(), "[rank0]: got TERM")) << run.output();
  EXPECT_TRUE(contains(run.output(), "[rank1]: got TERM")) << run.output();
}

TEST(PolarRun, WorkersDieWithAKilledLauncher) {
  Subprocess run({polar_run_binary(), "--nproc-per-node", "2", "--master-port",
                  std::to_string(free_tcp_port()), "--", "sleep", "300"});
  ASSERT_TRUE(wait_for([&] { return descendants(run.pid()).size() == 2; }, 10s));
  const auto workers = descendants(run.pid());
  kill(run.pid(), SIGKILL);
  run.wait(10s);
  for (pid_t pid : workers)
    EXPECT_TRUE(wait_for([&] { return !process_alive(pid); }, 5s)) << "pid " << pid << " survived";
}

TEST(PolarRun, ShortFormRunsPolarBesideIt) {
  Subprocess run(
      {polar_run_binary(), "--master-port", std::to_string(free_tcp_port()), "train", "--help"});
  ASSERT_EQ(run.wait(60s), 0) << run.output();
  EXPECT_TRUE(contains(run.output(), "[rank0]: ")) << run.output();
  EXPECT_TRUE(contains(run.output(), "--config")) << run.output();
}

TEST(PolarRun, RejectsBadUsage) {
  Subprocess unknown({polar_run_binary(), "--bogus", "1", "true"});
  EXPECT_EQ(unknown.wait(10s), 2);
  EXPECT_TRUE(contains(unknown.output(), "unknown option '--bogus'")) << unknown.output();
  Subprocess node({polar_run_binary(), "--nnodes", "2", "--node-rank", "2", "--", "true"});
  EXPECT_EQ(node.wait(10s), 2);
  EXPECT_TRUE(contains(node.output(), "--node-rank 2 must be less than --nnodes 2"))
      << node.output();
  Subprocess nproc({polar_run_binary(), "--nproc-per-node", "zero", "--", "true"});
  EXPECT_EQ(nproc.wait(10s), 2);
  EXPECT_TRUE(contains(nproc.output(), "expected a positive number or 'gpu'")) << nproc.output();
  Subprocess missing({polar_run_binary(), "--", "/nonexistent/worker"});
  EXPECT_EQ(missing.wait(10s), 127);
  EXPECT_TRUE(contains(missing.output(), "cannot execute '/nonexistent/worker'"))
      << missing.output();
}
