// `polar bench`: trains on random tokens with the real train step and reports throughput,
// achieved FLOP/s, MFU against a matmul peak measured in the same process and against the device's
// spec peak (polar/train/spec_peak.h), and peak memory; compares a run with a saved one.
#pragma once

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "polar/config/train_config.h"
#include "polar/train/spec_peak.h"

namespace polar {

struct BenchOptions {
  int64_t steps = 10;
  int64_t warmup_steps = 2;
  int64_t seq_len = 256;  // tokens per sequence (prefix half, candidate half)
  int64_t negatives = 1;
  // fixed: seq_len as above. polar: POLAR-shaped groups drawn with a fixed seed, prompt 32-256,
  // reference and candidates 64-512 tokens (prefix = bos prompt sep reference <|reward|> prompt
  // sep).
  std::string lengths = "fixed";
  // Non-empty: one more step runs under the profiler; its Chrome trace is written here and the
  // top kernels are logged.
  std::string profile;
};

struct BenchResult {
  double tokens_per_s = 0, ms_per_step = 0, achieved_gflops = 0, peak_gflops = 0, mfu = 0;
  double peak_memory_mb = 0, pairs_per_s = 0;
  double cpu_ms_per_step = 0;  // process CPU time (user + system): robust to other load on the host
  int64_t parameters = 0, tokens_per_step = 0, pairs_per_step = 0;
  std::string device, precision, peak_kind;
  std::string device_name;      // the CUDA device's name ("NVIDIA H100 80GB HBM3"), or "cpu"
  std::string spec_name;        // the spec table's device and precision; empty: no spec peak
  double spec_peak_gflops = 0;  // dense data-sheet peak; 0: none (CPU, or a GPU not in the table)
  double mfu_spec = 0;          // achieved / spec peak; 0 without a spec peak
  nlohmann::json to_json() const;
  // A result written by to_json (`polar bench --output`); `where` (the file) prefixes every error,
  // which names the missing or mistyped key. Keys added since (device_name, spec_*) are optional.
  static BenchResult from_json(const nlohmann::json& j, const std::string& where);
};

// Sets spec_name, spec_peak_gflops and mfu_spec from result.device_name and achieved_gflops for
// matmuls in `precision`; left at none on the CPU and for a GPU the spec table does not know.
void set_spec_peak(BenchResult& result, bool on_gpu, MatmulPrecision precision);

// The result as `polar bench` prints it, under a title line naming `config`: throughput, both
// MFUs (or why there is no spec peak: "no spec peak for the CPU", "spec peak unknown for NAME").
std::string format_bench_result(const BenchResult& result, const std::string& config);

// A saved `polar bench --output` file.
BenchResult load_bench_result(const std::string& path);

// The lines `polar bench --baseline` prints: this run beside `baseline` (named `baseline_name`)
// with the ratio new/old for tokens/s, pairs/s, ms/step, the measured matmul peak and tokens/s per
// GFLOP/s of that peak, then one WARNING line per configuration field (parameters, tokens and
// pairs per step, device, device name, precision) in which the two runs differ.
std::string compare_bench_results(const BenchResult& run, const BenchResult& baseline,
                                  const std::string& baseline_name);

// Measured peak of a square matmul on `device` in `precision` (GFLOP/s).
double measure_matmul_peak_gflops(const torch::Device& device, Precision precision,
                                  std::string* kind);

BenchResult run_bench(TrainConfig config, const BenchOptions& options);

}  // namespace polar
