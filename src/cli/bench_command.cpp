// `polar bench --config FILE [--steps N] [--baseline SAVED.json]`: training throughput on random
// tokens, optionally beside a saved run.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "polar/cli/commands.h"
#include "polar/common/json_config.h"
#include "polar/train/bench.h"

namespace polar::cli {

namespace {

// One "  label   value" line, the values in one column.
std::string line(const std::string& label, const std::string& value) {
  return fmt::format("  {:<20}  {}\n", label, value);
}

// The MFU line against the data-sheet peak, or why there is none.
std::string spec_mfu_line(const BenchResult& r) {
  if (r.spec_peak_gflops > 0)
    return line(
        fmt::format("MFU (spec peak, {}, {:.1f} TFLOP/s)", r.spec_name, r.spec_peak_gflops / 1e3),
        fmt::format("{:.1f}%", 100.0 * r.mfu_spec));
  if (r.device_name == "cpu") return line("MFU (spec peak)", "no spec peak for the CPU");
  return line("MFU (spec peak)", "spec peak unknown for " + r.device_name);
}

void print_result(const std::string& config, const BenchResult& r) {
  std::string out = fmt::format("bench {} ({} params, {} {}, {}):\n", config, r.parameters,
                                r.device, r.precision, r.device_name);
  out += line("pairs/s", fmt::format("{:.2f}  ({} pairs/step)", r.pairs_per_s, r.pairs_per_step));
  out += line("tokens/s", fmt::format("{:.0f}", r.tokens_per_s));
  out += line("ms/step", fmt::format("{:.1f}  ({} tokens/step; CPU time {:.1f} ms/step)",
                                     r.ms_per_step, r.tokens_per_step, r.cpu_ms_per_step));
  out += line("achieved", fmt::format("{:.2f} GFLOP/s", r.achieved_gflops));
  out += line("matmul peak", fmt::format("{:.2f} GFLOP/s  ({})", r.peak_gflops, r.peak_kind));
  out += line("MFU (measured peak)", fmt::format("{:.1f}%", 100.0 * r.mfu));
  out += spec_mfu_line(r);
  out += line("peak memory", fmt::format("{:.0f} MiB", r.peak_memory_mb));
  std::cout << out;
}

}  // namespace

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
    print_result(a->config, r);
    if (baseline) std::cout << compare_bench_results(r, *baseline, a->baseline);
    if (!a->output.empty()) write_json_file_atomic(a->output, r.to_json());
  });
}

}  // namespace polar::cli
