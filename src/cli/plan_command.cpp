// `polar plan --config FILE --nproc N [--gpu-memory GiB] [--set KEY=VALUE ...]`: the per-rank
// memory plan of a training config (see polar/train/memory_plan.h) without running it.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>

#include "polar/checkpoint/checkpoint.h"
#include "polar/cli/commands.h"
#include "polar/common/error.h"
#include "polar/config/train_config.h"
#include "polar/train/memory_plan.h"

namespace polar::cli {

void add_plan_command(CLI::App& app) {
  struct Args {
    std::string config;
    std::vector<std::string> overrides;
    int nproc = 1;
    double gpu_memory_gib = 0;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("plan", "print the per-rank memory plan of a training config");
  cmd->add_option("--config", args->config, "training config")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--nproc", args->nproc, "number of ranks (GPUs or CPU processes)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--gpu-memory", args->gpu_memory_gib,
                  "GiB per GPU: plan for CUDA and say whether the peak fits")
      ->check(CLI::Range(0.0, 1e6));
  cmd->add_option("--set", args->overrides,
                  "override a config key, e.g. --set train.zero=2 (repeatable)");
  cmd->callback([args] {
    const TrainConfig cfg = load_train_config(args->config, args->overrides);
    ModelConfig shape = cfg.model.shape;
    // A config that states its shape plans without its checkpoint at hand (e.g. before the
    // base is downloaded, as configs/polar7b_lora.json).
    const bool init_here = !cfg.model.init_from.empty() &&
                           (std::filesystem::exists(cfg.model.init_from) || !cfg.model.shape_given);
    if (init_here)
      shape = load_model_shape(cfg.model.init_from);
    else if (!cfg.model.shape_from.empty())
      shape = load_model_shape(cfg.model.shape_from);
    shape.validate();
    const std::string& device = cfg.train.device;
    const bool cuda =
        device.rfind("cuda", 0) == 0 || (device == "auto" && args->gpu_memory_gib > 0);
    POLAR_CHECK(!(device == "cpu" && args->gpu_memory_gib > 0), args->config,
                ": train.device is cpu but --gpu-memory was given");
    const MemoryPlan plan = plan_memory(shape, cfg, args->nproc, cuda, current_rss_bytes());
    std::cout << plan.format(args->gpu_memory_gib);
  });
}

}  // namespace polar::cli
