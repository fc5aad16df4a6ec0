// `polar bench`: trains on random tokens with the real train step and reports throughput,
// achieved FLOP/s, MFU against a matmul peak measured in the same process, and peak memory.
#pragma once

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "polar/config/train_config.h"

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
  nlohmann::json to_json() const;
};

// Measured peak of a square matmul on `device` in `precision` (GFLOP/s).
double measure_matmul_peak_gflops(const torch::Device& device, Precision precision,
                                  std::string* kind);

BenchResult run_bench(TrainConfig config, const BenchOptions& options);

}  // namespace polar
