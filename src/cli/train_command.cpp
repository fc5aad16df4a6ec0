// `polar train --config FILE [--set KEY=VALUE ...] [--resume]`
#include <CLI/CLI.hpp>

#include "polar/cli/commands.h"
#include "polar/config/train_config.h"
#include "polar/train/trainer.h"

namespace polar::cli {

void add_train_command(CLI::App& app) {
  struct Args {
    std::string config;
    std::vector<std::string> overrides;
    bool resume = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd =
      app.add_subcommand("train", "pre-train or fine-tune a reward model from a JSON config");
  cmd->add_option("--config", args->config, "training config (see configs/)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", args->overrides,
                  "override a config key, e.g. --set train.lr=1e-4 (repeatable)");
  cmd->add_flag("--resume", args->resume, "continue from the latest checkpoint in run.output_dir");
  cmd->callback([args] {
    install_stop_signal_handlers();
    TrainConfig cfg = load_train_config(args->config, args->overrides);
    if (int sig = pending_stop_signal(); sig != 0)
      throw CLI::RuntimeError(128 + sig);  // before any work
    Trainer trainer(cfg, args->resume);
    int code = trainer.run();
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace polar::cli
