// polar-run: the data-parallel launcher. Flags follow torchrun; the workers get RANK, LOCAL_RANK,
// WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT and
// TORCHELASTIC_RESTART_COUNT. Usage:
//   polar-run [flags] -- COMMAND ARGS...
//   polar-run [flags] train ARGS...        (runs the `polar` binary next to polar-run)
// Supervision (output prefixes, signals, failure handling, restarts): polar_run_supervisor.cpp.
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "polar/cli/dry_parse.h"
#include "polar/dist/launcher.h"

namespace {

// The directory of this executable, for the `train` short form.
std::string own_directory() {
  char buffer[4096];
  const ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  if (n <= 0) return ".";
  std::string path(buffer, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

// "gpu": one worker per GPU that CUDA_VISIBLE_DEVICES (or /dev/nvidiaN) shows.
int count_gpus() {
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES")) {
    std::string list = visible;
    if (list.empty()) return 0;
    return static_cast<int>(std::count(list.begin(), list.end(), ',')) + 1;
  }
  int count = 0;
  if (DIR* dir = opendir("/dev")) {
    while (dirent* entry = readdir(dir)) {
      const std::string name = entry->d_name;
      if (name.size() > 6 && name.rfind("nvidia", 0) == 0 &&
          name.find_first_not_of("0123456789", 6) == std::string::npos) {
        ++count;
      }
    }
    closedir(dir);
  }
  return count;
}

// --master-port 0 on a single node: a port the kernel reports free right now.
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  if (fd >= 0) close(fd);
  return port;
}

int usage_error(const std::string& message) {
  std::cerr << "polar-run: " << message << "\nRun 'polar-run --help' for usage.\n";
  return 2;
}

void add_launch_options(CLI::App& app, polar::dist::LaunchOptions& options, std::string& nproc) {
  app.add_option("--nnodes", options.nnodes, "number of nodes (one polar-run per node)")
      ->check(CLI::PositiveNumber);
  app.add_option("--node-rank,--node_rank", options.node_rank, "this node's index, 0..nnodes-1")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--nproc-per-node,--nproc_per_node", nproc,
                 "workers on this node: a number, or 'gpu' for one per visible GPU");
  app.add_option("--master-addr,--master_addr", options.master_addr,
                 "address of the node that runs rank 0")
      ->capture_default_str();
  app.add_option("--master-port,--master_port", options.master_port,
                 "TCP port of rank 0's rendezvous store (0: pick a free one; single node only)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--max-restarts,--max_restarts", options.max_restarts,
                 "restart the whole worker group this many times after a failure")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--log-dir,--log_dir", options.log_dir,
                 "also write each rank's output to DIR/attempt_K/rank_R.log");
  app.add_option("--stop-grace-seconds", options.stop_grace_seconds,
                 "when stopping workers, seconds between SIGTERM and SIGKILL")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.prefix_command();
}

// Each of the steps below returns the exit code when polar-run must stop there, else nothing.

std::optional<int> parse_flags(CLI::App& app, int argc, char** argv, polar::cli::DryParse dry) {
  if (dry != polar::cli::DryParse::kOff) {
    polar::cli::make_dry(app, dry);
    bool parsed = false;
    if (const int code = polar::cli::dry_parse(app, argc, argv, &parsed); !parsed) return code;
    return std::nullopt;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return std::nullopt;
}

// The workers' command from what follows the flags; a dry run prints it instead.
std::optional<int> resolve_command(const CLI::App& app, polar::cli::DryParse dry,
                                   std::vector<std::string>& command) {
  command = app.remaining();
  if (!command.empty() && command.front() == "--") {
    command.erase(command.begin());
  } else if (!command.empty() && command.front().rfind("-", 0) == 0) {
    return usage_error("unknown option '" + command.front() + "'");
  }
  if (command.empty() && dry == polar::cli::DryParse::kPartial) return 0;
  if (command.empty()) return usage_error("no command given: polar-run [flags] -- COMMAND ARGS...");
  if (command.front() == "train") command.insert(command.begin(), own_directory() + "/polar");
  if (dry != polar::cli::DryParse::kOff) {  // the workers' command, one word a line, unrun
    for (const std::string& word : command) std::cout << word << "\n";
    return 0;
  }
  return std::nullopt;
}

// --nproc-per-node, --node-rank and --master-port checked and resolved.
std::optional<int> resolve_node(const std::string& nproc, polar::dist::LaunchOptions& options) {
  if (nproc == "gpu") {
    options.nproc_per_node = count_gpus();
    if (options.nproc_per_node == 0) return usage_error("--nproc-per-node gpu: no GPU is visible");
  } else {
    char* end = nullptr;
    const long value = std::strtol(nproc.c_str(), &end, 10);
    if (nproc.empty() || *end != '\0' || value < 1 || value > 4096) {
      return usage_error("--nproc-per-node: expected a positive number or 'gpu', got '" + nproc +
                         "'");
    }
    options.nproc_per_node = static_cast<int>(value);
  }
  if (options.node_rank >= options.nnodes) {
    return usage_error("--node-rank " + std::to_string(options.node_rank) +
                       " must be less than --nnodes " + std::to_string(options.nnodes));
  }
  if (options.master_port == 0) {
    if (options.nnodes > 1)
      return usage_error("--master-port 0 only works on a single node; pick a port");
    options.master_port = free_port();
    if (options.master_port == 0)
      return usage_error("could not find a free port; pass --master-port");
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "polar-run: start the data-parallel workers of one node and supervise them.\n"
      "  polar-run [flags] -- COMMAND ARGS...\n"
      "  polar-run [flags] train ARGS...    (the polar binary beside polar-run)\n"};
  polar::dist::LaunchOptions options;
  std::string nproc = "1";
  add_launch_options(app, options, nproc);
  const polar::cli::DryParse dry = polar::cli::dry_parse_mode();
  if (const auto code = parse_flags(app, argc, argv, dry)) return *code;
  if (const auto code = resolve_command(app, dry, options.command)) return *code;
  if (const auto code = resolve_node(nproc, options)) return *code;
  return polar::dist::run_workers(options);
}
