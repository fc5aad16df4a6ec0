// Context tests with real processes: two ranks on 127.0.0.1 (Gloo) started by polar-run, each
// running a scenario of context_worker.cpp; and rendezvous failures of a lone process.
#include <gtest/gtest.h>

#include <chrono>

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
