// Microbenchmarks of the fused CUDA paths against the unfused LibTorch ops they replace, next to
// the two ceilings that give them meaning: device-to-device copy bandwidth and bf16 matmul rate,
// both measured on the device at hand. Driven by polar_kernel_bench (scripts/device/check.sh).
#pragma once

#include <string>

namespace polar::kernels {

struct KernelBenchOptions {
  int warmup = 3;            // untimed runs before each measurement
  int reps = 20;             // timed runs; the median is reported
  bool quick = false;        // smaller sizes (a smoke run)
  bool cpu_dry_run = false;  // tiny sizes on the CPU: exercises the harness without a GPU
};

// Runs on the current CUDA device and returns a markdown report (tables of microseconds, GB/s and
// TFLOP/s). Throws polar::Error when the CUDA kernels are not compiled in or no device is present
// (unless cpu_dry_run, whose numbers mean nothing).
std::string run_kernel_bench(const KernelBenchOptions& options);

}  // namespace polar::kernels
