// Context tests with real processes: two ranks on 127.0.0.1 (Gloo) started by polar-run, each
// running a scenario of context_worker.cpp; and rendezvous failures of a lone process.
#include <gtest/gtest.h>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dist/dist_test_util.h"

using namespace std::chrono_literals;
using polar::testing::free_tcp_port;
using polar::testing::polar_run_binary;
using polar::testing::self_binary;
using polar::testing::Subprocess;

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Subprocess run_scenario(const std::string& scenario) {
  return Subprocess(
      {polar_run_binary(), "--nproc-per-node", "2", "--master-port",
       std::to_string(free_tcp_port()), "--stop-grace-seconds", "2", "--", self_binary()},
      {{"POLAR_DIST_TEST_SCENARIO", scenario}, {"OMP_NUM_THREADS", "1"}});
}

// What torchrun's agent does with TORCHELASTIC_USE_AGENT_STORE=True: it hosts the store on
// MASTER_PORT itself, for the whole job, and the workers only join it.
struct LauncherStore {
  LauncherStore() {
    c10d::TCPStoreOptions options;
    options.port = 0;
    options.isServer = true;
    options.waitWorkers = false;
    store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", options);
    port = store->getPort();
  }
  c10::intrusive_ptr<c10d::TCPStore> store;
  int port = 0;
};

std::map<std::string, std::string> agent_env(const std::string& scenario, int rank, int port,
                                             int restart) {
  return {{"POLAR_DIST_TEST_SCENARIO", scenario},
          {"RANK", std::to_string(rank)},
          {"WORLD_SIZE", "2"},
          {"MASTER_ADDR", "127.0.0.1"},
          {"MASTER_PORT", std::to_string(port)},
          {"TORCHELASTIC_USE_AGENT_STORE", "True"},
          {"TORCHELASTIC_RESTART_COUNT", std::to_string(restart)},
          {"OMP_NUM_THREADS", "1"}};
}

}  // namespace

TEST(DistContext, BroadcastAllReduceAndBucketedGradientsOverTwoRanks) {
  Subprocess run = run_scenario("collectives");
  ASSERT_EQ(run.wait(120s), 0) << run.output();
  EXPECT_TRUE(contains(run.output(), "[rank0]: scenario collectives ok")) << run.output();
  EXPECT_TRUE(contains(run.output(), "[rank1]: scenario collectives ok")) << run.output();
}

TEST(DistContext, StuckPeerTimesOutNamingTheCollectiveAndTheRank) {
  Subprocess run = run_scenario("timeout");
  ASSERT_EQ(run.wait(120s), 0) << run.output();
  EXPECT_TRUE(contains(run.output(), "[rank0]: scenario timeout ok")) << run.output();
}

TEST(DistContext, MissingPeerFailsRendezvousWithinTheTimeout) {
  // Rank 0 of 2 alone: it hosts the store and waits for a peer that never comes.
  const int port = free_tcp_port();
  Subprocess run({self_binary()}, {{"POLAR_DIST_TEST_SCENARIO", "rendezvous"},
                                   {"RANK", "0"},
                                   {"WORLD_SIZE", "2"},
                                   {"MASTER_ADDR", "127.0.0.1"},
                                   {"MASTER_PORT", std::to_string(port)}});
  ASSERT_EQ(run.wait(60s), 0) << run.output();
  EXPECT_LT(run.seconds(), 15.0);
  EXPECT_TRUE(contains(run.output(), "rendezvous failed on rank 0")) << run.output();
  EXPECT_TRUE(contains(run.output(), "not all 2 ranks joined within 2 s")) << run.output();
}

TEST(DistContext, WrongPortFailsRendezvousWithinTheTimeout) {
  // Rank 1 pointed at a port where no rank 0 listens.
  const int port = free_tcp_port();
  Subprocess run({self_binary()}, {{"POLAR_DIST_TEST_SCENARIO", "rendezvous"},
                                   {"RANK", "1"},
                                   {"WORLD_SIZE", "2"},
                                   {"MASTER_ADDR", "127.0.0.1"},
                                   {"MASTER_PORT", std::to_string(port)}});
  ASSERT_EQ(run.wait(60s), 0) << run.output();
  EXPECT_LT(run.seconds(), 15.0);
  EXPECT_TRUE(contains(
      run.output(),
      "rendezvous failed on rank 1 of 2: could not join the store of rank 0 at 127.0.0.1:" +
          std::to_string(port)))
      << run.output();
}

TEST(DistContext, EveryRankJoinsTheLaunchersStoreRoundAfterRound) {
  // Rank 0 must not host a store of its own on the launcher's port, and a store that outlives a
  // round must not pair a rank with the keys of the round before. The rounds' restart counts
  // need not agree (torchrun's agents count only their own failures).
  LauncherStore launcher;
  for (const auto& [count0, count1] : std::vector<std::pair<int, int>>{{0, 0}, {1, 0}, {2, 2}}) {
    Subprocess rank1({self_binary()}, agent_env("collectives", 1, launcher.port, count1));
    Subprocess rank0({self_binary()}, agent_env("collectives", 0, launcher.port, count0));
    ASSERT_EQ(rank0.wait(120s), 0) << "counts " << count0 << "/" << count1 << ":\n"
                                   << rank0.output();
    ASSERT_EQ(rank1.wait(120s), 0) << rank1.output();
    EXPECT_TRUE(contains(rank0.output(), "scenario collectives ok")) << rank0.output();
    EXPECT_TRUE(contains(rank0.output(), "the launcher's store")) << rank0.output();
  }
  // Every earlier round's keys are still there; lone ranks must not mistake them for peers.
  Subprocess lone0({self_binary()}, agent_env("rendezvous", 0, launcher.port, 3));
  ASSERT_EQ(lone0.wait(60s), 0) << lone0.output();
  EXPECT_LT(lone0.seconds(), 15.0);
  EXPECT_TRUE(contains(lone0.output(),
                       "rendezvous failed on rank 0 of 2: rank 1 never joined the "
                       "launcher's store at 127.0.0.1:" +
                           std::to_string(launcher.port)))
      << lone0.output();
  Subprocess lone1({self_binary()}, agent_env("rendezvous", 1, launcher.port, 3));
  ASSERT_EQ(lone1.wait(60s), 0) << lone1.output();
  EXPECT_LT(lone1.seconds(), 15.0);
  EXPECT_TRUE(contains(lone1.output(),
                       "rendezvous failed on rank 1 of 2: rank 0 did not open a "
                       "round with every rank"))
      << lone1.output();
}

TEST(DistContext, MissingLauncherStoreFailsWithinTheTimeoutNamingTheRank) {
  const int port = free_tcp_port();  // nobody listens: the agent is gone
  Subprocess run({self_binary()}, agent_env("rendezvous", 1, port, 0));
  ASSERT_EQ(run.wait(60s), 0) << run.output();
  EXPECT_LT(run.seconds(), 15.0);
  EXPECT_TRUE(contains(run.output(),
                       "rendezvous failed on rank 1 of 2: could not join the "
                       "launcher's store at 127.0.0.1:" +
                           std::to_string(port)))
      << run.output();
}
