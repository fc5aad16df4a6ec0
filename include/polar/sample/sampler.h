// `polar sample`: trajectories {prompt, policy, response} from a pool of policies.
//   --scheme paper (default): POLAR's scheme; per prompt two distinct policies drawn at random
//     (seeded by the prompt's text), A samples twice (reference and positive), B once
//     (negative), so `polar data pretrain --pairing paper` builds one group per prompt. Corpus
//     prefixes go to base policies and instruction prompts to chat policies (to all policies
//     when fewer than two have the prompt's kind).
//   --scheme all: every policy answers every prompt samples_per_prompt times.
// Records
//   {"prompt", "policy", "response"[, "category"], "prompt_id", "sample", "finish"
//    [, "filtered": [rules]][, "dropped": rule][, "prompt_cut": true]}
// are appended to the output as they finish (the first four are what `polar data pretrain`
// reads). Responses pass the response filter (data/response_filter.h): aborted ones are not
// written (a re-run asks again), dropped ones are written with "dropped" (so a re-run does not
// ask again; `polar data pretrain` skips them). Records are keyed by (policy, prompt_id,
// sample), prompt_id a hash of the prompt text, so a re-run skips what the output holds even
// after the prompt file was edited; each key has its own seed. A prompt a server refuses as too
// long for its context is cut from the left (halved, up to four times) or skipped and counted.
// Every policy is checked before any sampling; a failure during sampling keeps everything
// written so far.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "polar/data/response_filter.h"
#include "polar/sample/pool.h"
#include "polar/sample/prompts.h"

namespace polar::sample {

struct SampleJob {
  int64_t prompt_index = 0;  // into the run's prompts
  int64_t sample = 0;
  uint64_t seed = 0;
};

struct JobResult {
  std::string text;
  std::string finish;            // "stop" | "length" | the server's finish_reason
  int64_t tokens = -1;           // generated tokens, -1 when unknown
  bool prompt_cut = false;       // the prompt was cut from the left to fit the context
  bool context_skipped = false;  // the prompt did not fit even cut: no text
};

// Called once per finished job; may be called from several threads at once.
using JobDone = std::function<void(const SampleJob&, const JobResult&)>;

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

enum class SampleScheme { Paper, All };
SampleScheme parse_sample_scheme(const std::string& name);  // "paper" | "all"

struct SampleRunOptions {
  std::vector<PolicySpec> policies;
  std::vector<Prompt> prompts;
  std::string output;
  SampleScheme scheme = SampleScheme::Paper;
  int64_t samples_per_prompt = 1;  // scheme all
  uint64_t seed = 0;
  ResponseFilterOptions filter;
  bool progress = true;  // a progress line with ETA on stderr
};

struct SampleRunStats {
  int64_t written = 0;          // records appended by this run (kept or marked dropped)
  int64_t existing = 0;         // records found in the output and skipped
  int64_t other_prompts = 0;    // records in the output of prompts this run does not have
  int64_t tokens = 0;           // generated tokens (where the backend reports them)
  int64_t prompts_cut = 0;      // responses to prompts cut from the left to fit a context
  int64_t context_skipped = 0;  // jobs skipped: the prompt did not fit even cut
  ResponseFilterCounts filter;
  double seconds = 0;
  nlohmann::json to_json() const;
};

// The key of a prompt in the records: 16 hex digits of data's prompt_hash of its text.
std::string prompt_id(const std::string& text);
// The policies (indices into `policies`) that sample prompt `prompt` under the paper scheme and
// how many samples each takes: {A, 2}, {B, 1}.
std::vector<std::pair<size_t, int64_t>> paper_assignment(const std::vector<PolicySpec>& policies,
                                                         const Prompt& prompt, uint64_t seed);

SampleRunStats run_sampling(const SampleRunOptions& options);

}  // namespace polar::sample
