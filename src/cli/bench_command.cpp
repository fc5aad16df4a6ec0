// `polar bench --config FILE [--steps N] [--baseline SAVED.json]`: training throughput on random
// tokens, optionally beside a saved run.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "polar/cli/commands.h"
#include "polar/common/json_config.h"
#include "polar/train/bench.h"

namespace polar::cli {

void add_bench_command(CLI::App& app) {
  struct Args {
    std::string config, output, baseline;
    std::vector<std::string> overrides;
    BenchOptions options;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "bench",
      "train N steps on random tokens; print tokens/s, GFLOP/s, MFU (measured and spec peak), "
      "memory; --baseline sets the run beside a saved one");
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
  cmd->add_option("--baseline", a->baseline,
                  "a saved --output JSON of an earlier run: print this run beside it (new/old) and "
                  "warn about every configuration field that differs");
  cmd->add_option("--profile", a->options.profile,
                  "run one more step under the profiler: write its Chrome trace to this file, log "
                  "the top kernels");
  cmd->callback([a] {
    TrainConfig cfg = load_train_config(a->config, a->overrides);
    // Read before the run, so a bad file is refused before minutes of benchmarking.
    std::optional<BenchResult> baseline;
    if (!a->baseline.empty()) baseline = load_bench_result(a->baseline);
    BenchResult r = run_bench(cfg, a->options);
    std::cout << format_bench_result(r, a->config);
    if (baseline) std::cout << compare_bench_results(r, *baseline, a->baseline);
    if (!a->output.empty()) write_json_file_atomic(a->output, r.to_json());
  });
}

}  // namespace polar::cli
