// polar_kernel_bench: runs the kernel microbenchmarks (polar::kernels::run_kernel_bench) on the
// current CUDA device, prints the markdown report and optionally writes it to --out.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <iostream>
#include <string>

#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/kernels/bench.h"

int main(int argc, char** argv) {
  CLI::App app{
      "polar_kernel_bench: fused CUDA kernels vs unfused LibTorch, with measured ceilings"};
  polar::kernels::KernelBenchOptions options;
  std::string out;
  app.add_option("--reps", options.reps, "timed runs per measurement (median reported)");
  app.add_option("--warmup", options.warmup, "untimed runs before each measurement");
  app.add_flag("--quick", options.quick, "small sizes (smoke run)");
  app.add_flag("--cpu-dry-run", options.cpu_dry_run,
               "tiny sizes on the CPU (checks the harness; numbers mean nothing)");
  app.add_option("--out", out, "also write the markdown report here");
  CLI11_PARSE(app, argc, argv);
  try {
    const std::string md = polar::kernels::run_kernel_bench(options);
    std::cout << md << std::flush;
    if (!out.empty()) polar::write_file_atomic(out, md);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
