// `polar bench --config FILE [--steps N]`: training throughput on random tokens.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "polar/cli/commands.h"
#include "polar/common/json_config.h"
#include "polar/train/bench.h"

namespace polar::cli {

void add_bench_command(CLI::App& app) {
  struct Args {
    std::string config, output;
    std::vector<std::string> overrides;
    BenchOptions options;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "bench", "train N steps on random tokens; print tokens/s, GFLOP/s, MFU, memory");
  cmd->add_option("--config", a->config, "training config (model shape, batch, device, precision)")
      ->required();
  cmd->add_option("--set", a->overrides, "override a config key (repeatable)");
  cmd->add_option("--steps", a->options.steps, "timed steps")->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", a->options.warmup_steps, "untimed steps first");
  cmd->add_option("--seq-len", a->options.seq_len, "tokens per sequence")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--negatives", a->options.negatives, "negatives per group")
      ->check(CLI::PositiveNumber);
  cmd->add_option(
      "--lengths", a->options.lengths,
      "fixed (--seq-len) | polar (prompt 32-256, reference and candidates 64-512, fixed seed)");
  cmd->add_option("--output", a->output, "also write the result as JSON");
  cmd->add_option("--profile", a->options.profile,
                  "run one more step under the profiler: write its Chrome trace to this file, log "
                  "the top kernels");
  cmd->callback([a] {
    TrainConfig cfg = load_train_config(a->config, a->overrides);
    BenchResult r = run_bench(cfg, a->options);
    std::cout << fmt::format(
        "bench {} ({} params, {} {}):\n"
        "  pairs/s         {:.2f}  ({} pairs/step)\n"
        "  tokens/s        {:.0f}\n  ms/step         {:.1f}  ({} tokens/step; CPU time {:.1f} "
        "ms/step)\n"
        "  achieved        {:.2f} GFLOP/s\n  matmul peak     {:.2f} GFLOP/s  ({})\n"
        "  MFU             {:.1f}%\n  peak memory     {:.0f} MiB\n",
        a->config, r.parameters, r.device, r.precision, r.pairs_per_s, r.pairs_per_step,
        r.tokens_per_s, r.ms_per_step, r.tokens_per_step, r.cpu_ms_per_step, r.achieved_gflops,
        r.peak_gflops, r.peak_kind, 100.0 * r.mfu, r.peak_memory_mb);
    if (!a->output.empty()) write_json_file_atomic(a->output, r.to_json());
  });
}

}  // namespace polar::cli
