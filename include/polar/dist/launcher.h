// polar-run's worker supervisor (tools/polar_run*.cpp): starts one node's worker processes with
// the torchrun environment, prefixes their output with the rank, forwards signals, stops the group
// when a worker fails and restarts it up to max_restarts times. Plain POSIX, no LibTorch.
#pragma once

#include <string>
#include <vector>

namespace polar::dist {

struct LaunchOptions {
  int nnodes = 1;
  int node_rank = 0;
  int nproc_per_node = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int max_restarts = 0;
  std::string log_dir;             // empty: no per-rank log files
  double stop_grace_seconds = 10;  // SIGTERM -> SIGKILL delay when stopping a worker group
  std::vector<std::string> command;
};

// Runs the workers until they all succeed (returns 0), one fails with no restarts left (returns
// its exit code, or 128 + signal), or the launcher is interrupted (returns 128 + signal).
int run_workers(const LaunchOptions& options);

}  // namespace polar::dist
