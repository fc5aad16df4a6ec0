// DistEnv::from_environment: the process's place in the job, from polar-run/torchrun variables
// (RANK, WORLD_SIZE, ...) or, when those are absent, from Slurm's (SLURM_PROCID, SLURM_NTASKS,
// ...).
#include <fmt/format.h>

#include <cctype>
#include <cstdlib>
#include <optional>
#include <string>

#include "polar/common/error.h"
#include "polar/dist/dist.h"

namespace polar::dist {
namespace {

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

int parse_int(const std::string& text, const char* name) {
  bool digits = !text.empty() && text.size() <= 9;
  for (char c : text) digits = digits && std::isdigit(static_cast<unsigned char>(c));
  POLAR_CHECK(digits, "environment variable ", name, "='", text,
              "': expected a non-negative integer");
  return std::stoi(text);
}

std::optional<int> env_int(const char* name) {
  auto text = env(name);
  if (!text) return std::nullopt;
  return parse_int(*text, name);
}

// Slurm writes tasks per node as "4", "4(x2)" or "4(x2),3": the first count is this layout's
// per-node size, which is what LOCAL_WORLD_SIZE means on a homogeneous allocation.
std::optional<int> slurm_tasks_per_node() {
  for (const char* name :
       {"SLURM_NTASKS_PER_NODE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"}) {
    auto text = env(name);
    if (!text) continue;
    size_t end = 0;
    while (end < text->size() && std::isdigit(static_cast<unsigned char>((*text)[end]))) ++end;
    if (end > 0) return parse_int(text->substr(0, end), name);
  }
  return std::nullopt;
}

// The first host of a Slurm node list: "gpu[03-05,09],cpu1" -> "gpu03".
std::optional<std::string> slurm_first_host() {
  for (const char* name : {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"}) {
    auto list = env(name);
    if (!list) continue;
    const std::string& s = *list;
    size_t comma = s.find(','), bracket = s.find('[');
    if (bracket == std::string::npos || (comma != std::string::npos && comma < bracket)) {
      return s.substr(0, comma);
    }
    size_t stop = s.find_first_of(",-]", bracket + 1);
    POLAR_CHECK(stop != std::string::npos, "environment variable ", name, "='", s,
                "': unterminated '['");
    return s.substr(0, bracket) + s.substr(bracket + 1, stop - bracket - 1);
  }
  return std::nullopt;
}

}  // namespace

DistEnv DistEnv::from_environment() {
  DistEnv e;
  const bool torchrun = env("RANK") || env("WORLD_SIZE");
  const bool slurm = !torchrun && env("SLURM_PROCID") && env("SLURM_NTASKS");
  if (torchrun) {
    auto rank = env_int("RANK");
    auto world = env_int("WORLD_SIZE");
    POLAR_CHECK(rank && world,
                "RANK and WORLD_SIZE must be set together (RANK=", env("RANK").value_or("<unset>"),
                ", WORLD_SIZE=", env("WORLD_SIZE").value_or("<unset>"), ")");
    e.rank = *rank;
    e.world_size = *world;
    e.local_rank = env_int("LOCAL_RANK").value_or(e.rank);
    e.local_world_size = env_int("LOCAL_WORLD_SIZE").value_or(e.world_size);
  } else if (slurm) {
    e.rank = *env_int("SLURM_PROCID");
    e.world_size = *env_int("SLURM_NTASKS");
    e.local_rank = env_int("SLURM_LOCALID").value_or(0);
    e.local_world_size = slurm_tasks_per_node().value_or(1);
    if (auto host = slurm_first_host()) e.master_addr = *host;
  }
  if (auto addr = env("MASTER_ADDR")) e.master_addr = *addr;
  if (auto port = env_int("MASTER_PORT")) e.master_port = *port;
  // polar-run and torchrun count restarts of the worker group; Slurm counts requeues.
  e.restart_count = env_int("TORCHELASTIC_RESTART_COUNT")
                        .value_or(slurm ? env_int("SLURM_RESTART_COUNT").value_or(0) : 0);
  // torchrun writes Python's str(bool); anything but "True" leaves rank 0 hosting the store, as
  // torch.distributed does.
  e.agent_store = env("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";

  POLAR_CHECK(e.world_size >= 1, "WORLD_SIZE must be at least 1, got ", e.world_size);
  POLAR_CHECK(e.rank < e.world_size, "rank ", e.rank, " is outside the world of size ",
              e.world_size, " (", slurm ? "SLURM_PROCID/SLURM_NTASKS" : "RANK/WORLD_SIZE", ")");
  POLAR_CHECK(e.local_world_size >= 1 && e.local_rank < e.local_world_size, "local rank ",
              e.local_rank, " is outside the node's ", e.local_world_size,
              " processes (LOCAL_RANK/LOCAL_WORLD_SIZE)");
  POLAR_CHECK(e.master_port >= 1 && e.master_port <= 65535, "MASTER_PORT=", e.master_port,
              ": expected a TCP port in 1..65535");
  return e;
}

std::string DistEnv::describe() const {
  return fmt::format("rank {}/{} (local {}/{}) via {}:{}{}", rank, world_size, local_rank,
                     local_world_size, master_addr, master_port,
                     agent_store ? " (the launcher's store)" : "");
}

}  // namespace polar::dist
