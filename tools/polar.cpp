// polar: the one CLI. Every subcommand is registered by the module it drives
// (include/polar/cli/commands.h); errors from bad input end with a message and exit code 1.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <exception>

#include "polar/cli/commands.h"
#include "polar/common/error.h"

int main(int argc, char** argv) {
  CLI::App app{"polar: POLAR reward models — build data, pre-train, fine-tune, evaluate, export"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "polar 0.1.0");
  polar::cli::add_tokenizer_command(app);
  polar::cli::add_data_command(app);
  polar::cli::add_train_command(app);
  polar::cli::add_eval_commands(app);
  polar::cli::add_bench_command(app);
  polar::cli::add_interop_commands(app);
  polar::cli::add_plan_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const polar::Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("unexpected error: {}", e.what());
    return 2;
  }
  return 0;
}
