// polar: the one CLI. Every subcommand is registered by the module it drives
// (include/polar/cli/commands.h); errors from bad input end with a message and exit code 1.
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <malloc.h>
#include <signal.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "polar/cli/commands.h"
#include "polar/cli/dry_parse.h"
#include "polar/common/activity.h"
#include "polar/common/error.h"
#include "polar/train/trainer.h"

namespace {

volatile std::sig_atomic_t g_early_signal = 0;

void on_early_signal(int sig) { g_early_signal = sig; }

// Runs before the shared libraries' initializers (LibTorch's take a noticeable time), so a
// SIGINT/SIGTERM at any moment of start-up is seen and answered with the documented 128+signal.
void catch_signals_from_start(int, char**, char**) {
  struct sigaction sa {};
  sa.sa_handler = on_early_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// A training step frees and re-allocates the same tensors every step. glibc would hand their
// pages back to the kernel (trimming the heap top, unmapping large blocks) and fault them in
// again, zeroed, the next step: about a tenth of a small model's CPU step. Keep them (a setting
// in the environment wins).
void keep_freed_memory() {
  if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr) mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (std::getenv("MALLOC_TOP_PAD_") == nullptr) mallopt(M_TOP_PAD, 64 << 20);
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) mallopt(M_MMAP_THRESHOLD, 32 << 20);
}

// libgomp's threads spin ~300,000 rounds before sleeping at a barrier: on a busy machine a
// thread waiting for a descheduled peer burns the core that peer needs (measured: a 2-thread
// step 4.6x slower beside two busy loops, 2.1x with 100,000). libgomp reads the setting in its
// initializer, which runs after this; a setting in the environment wins.
void shorten_openmp_spin() { setenv("GOMP_SPINCOUNT", "100000", /*overwrite=*/0); }

void before_libraries(int argc, char** argv, char** envp) {
  catch_signals_from_start(argc, argv, envp);
  keep_freed_memory();
  shorten_openmp_spin();
}

__attribute__((section(".preinit_array"), used)) void (*const g_preinit)(int, char**,
                                                                         char**) = before_libraries;

// The subcommand named on the command line (the first argument not starting with '-').
std::string subcommand_of(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (argv[i][0] != '-') return argv[i];
  return "";
}

// `polar train` checkpoints and stops on SIGINT/SIGTERM; every other command keeps the default
// (terminate), after honouring a signal that arrived during start-up.
int hand_over_signals(const std::string& command) {
  if (command == "train") {
    polar::install_stop_signal_handlers();
    if (g_early_signal != 0) std::raise(g_early_signal);  // now recorded by the trainer's handler
    return 0;
  }
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  return g_early_signal != 0 ? 128 + g_early_signal : 0;
}

// The message for an exception that is not a polar::Error: what was being done, then the cause.
std::string describe_failure(const std::string& command, const std::string& cause) {
  std::string doing = polar::Activity::failed();
  return "polar " + command + (doing.empty() ? "" : " (while " + doing + ")") + ": " + cause;
}

// Every subcommand, each registered by the module it drives.
void add_commands(CLI::App& app) {
  app.require_subcommand(1);
  app.set_version_flag("--version", "polar " POLAR_VERSION);
  polar::cli::add_sample_command(app);
  polar::cli::add_tokenizer_command(app);
  polar::cli::add_data_command(app);
  polar::cli::add_train_command(app);
  polar::cli::add_eval_commands(app);
  polar::cli::add_bench_command(app);
  polar::cli::add_interop_commands(app);
  polar::cli::add_serve_command(app);
  polar::cli::add_plan_command(app);
  polar::cli::add_config_command(app);
}

const char* const kDescription =
    "polar: POLAR reward models — build data, pre-train, fine-tune, evaluate, export";

// POLAR_DRY_PARSE=batch: many command lines in one process (starting polar costs more than
// parsing). Each stdin line is {"partial": bool, "args": [words after "polar"]}; each stdout line
// {"rc": exit code, "error": "<CLI11 error name>: <message>" or ""}.
int dry_parse_batch() {
  for (std::string line; std::getline(std::cin, line);) {
    if (line.empty()) continue;
    const nlohmann::json request = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    nlohmann::json reply = {{"rc", 2}, {"error", "bad request line"}};
    if (request.is_object() && request.value("args", nlohmann::json()).is_array()) {
      std::vector<std::string> words = {"polar"};
      for (const auto& w : request["args"])
        words.push_back(w.is_string() ? w.get<std::string>() : w.dump());
      std::vector<const char*> argv;
      for (const auto& w : words) argv.push_back(w.c_str());
      CLI::App app{kDescription};
      add_commands(app);
      polar::cli::make_dry(app, request.value("partial", false) ? polar::cli::DryParse::kPartial
                                                                : polar::cli::DryParse::kComplete);
      std::ostringstream out, err;
      auto* old_out = std::cout.rdbuf(out.rdbuf());
      auto* old_err = std::cerr.rdbuf(err.rdbuf());
      const int rc = polar::cli::dry_parse(app, static_cast<int>(argv.size()), argv.data());
      std::cout.rdbuf(old_out);
      std::cerr.rdbuf(old_err);
      std::string error = err.str();
      if (error.rfind("dry-parse: ", 0) == 0) error = error.substr(11);
      while (!error.empty() && error.back() == '\n') error.pop_back();
      reply = {{"rc", rc}, {"error", error}};
    }
    std::cout << reply.dump() << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = subcommand_of(argc, argv);
  if (int code = hand_over_signals(command); code != 0) return code;
  if (const char* mode = std::getenv("POLAR_DRY_PARSE"); mode && std::string(mode) == "batch")
    return dry_parse_batch();
  CLI::App app{kDescription};
  add_commands(app);
  if (const auto dry = polar::cli::dry_parse_mode(); dry != polar::cli::DryParse::kOff) {
    polar::cli::make_dry(app, dry);
    return polar::cli::dry_parse(app, argc, argv);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const polar::Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    spdlog::error("{}", describe_failure(command, "out of memory"));
    return 1;
  } catch (const c10::Error& e) {
    spdlog::error("{}", describe_failure(
                            command, std::string("LibTorch error: ") + e.what_without_backtrace()));
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("{}", describe_failure(command, e.what()));
    return 1;
  }
  return 0;
}
