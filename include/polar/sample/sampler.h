// `polar sample`: every policy of a pool answers every prompt N times. Records
//   {"prompt", "policy", "response"[, "category"], "prompt_index", "sample",
//   "finish"}
// are appended to the output as they finish (the first four are what `polar
// data pretrain` reads). Each (policy, prompt, sample) has its own seed, so a
// run is reproducible, and a re-run skips the records the output already holds
// and appends the rest. Every policy is checked (server reachable and serving
// its model, built-in model importable) before any sampling; a failure during
// sampling keeps everything written so far.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "polar/sample/pool.h"
#include "polar/sample/prompts.h"

namespace polar::sample {

struct SampleJob {
  int64_t prompt_index = 0;
  int64_t sample = 0;
  uint64_t seed = 0;
};

// Called once per finished job with its text and generated token count (-1 when
// unknown); may be called from several threads at once.
using JobDone = std::function<void(const SampleJob&, const std::string& text,
                                   const std::string& finish, int64_t tokens)>;

class PolicyBackend {
 public:
  virtual ~PolicyBackend() = default;
  // Runs every job; throws polar::Error when one fails for good (jobs reported
  // stay reported).
  virtual void run(const std::vector<SampleJob>& jobs, const std::vector<Prompt>& prompts,
                   const JobDone& done) = 0;
};

// Opens (and checks) a policy's backend: pings the server, or imports the
// model.
std::unique_ptr<PolicyBackend> open_backend(const PolicySpec& policy);

struct SampleRunOptions {
  std::vector<PolicySpec> policies;
  std::vector<Prompt> prompts;
  std::string output;
  int64_t samples_per_prompt = 1;
  uint64_t seed = 0;
  bool progress = true;  // a progress line with ETA on stderr
};

struct SampleRunStats {
  int64_t written = 0;   // records appended by this run
  int64_t existing = 0;  // records found in the output and skipped
  int64_t tokens = 0;    // generated tokens (where the backend reports them)
  double seconds = 0;
};

SampleRunStats run_sampling(const SampleRunOptions& options);

}  // namespace polar::sample
