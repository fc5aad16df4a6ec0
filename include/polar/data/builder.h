// Dataset builders behind `polar data pretrain|preference`: JSONL records -> token shards.
//
// Pre-training groups (POLAR policy discrimination) are built out of core (pretrain_builder.cpp):
// pass 1 streams every input (plain, .gz, .zst) and hash-partitions the records by prompt into
// spill files; pass 2 builds each partition's groups on its own, so memory is bounded by
// --memory-budget, not by the corpus. Everything about a prompt depends only on the prompt and the
// seed (its trajectories are put in a canonical order and drawn from an RNG seeded by the prompt's
// hash; its split is decided by the hash too), so the dataset does not depend on the order of the
// input files, the budget, the thread count or how many workers share the build. Groups are
// stored in (prompt hash, prompt) order.
//
// Pairing schemes for one prompt (trajectories grouped by policy):
//   all-pairs (default): every disjoint (reference, positive) pair of every policy A, after a
//     seeded shuffle; groups_per_prompt caps it round-robin over the policies.
//   paper: POLAR's scheme, `passes` groups per prompt, each from a policy A drawn uniformly among
//     those with two trajectories, two distinct trajectories of A drawn uniformly.
// Either way the K negatives are one random trajectory each from K distinct other policies,
// chosen by --negatives-from (NegativeSource): any other policy (default), a different policy of
// the reference's family, a mix of the two, or the family neighbour nearest by step; families and
// steps come from a policy table (--policies FILE). When the prompt has no policy of the wanted
// kind left, the negative is drawn from any other policy and counted as a fallback.
// A trajectory that repeats an earlier one of the same prompt and policy is a duplicate (dropped,
// counted); groups whose positive text equals the reference text or whose negative text equals
// the positive are dropped and counted.
// Preference groups: one per record, prefix(prompt, reference) + [chosen, rejected].
// Both split train/eval by prompt, so a prompt never appears in both, and write the layout of
// shards.h atomically (OUTPUT.tmp-<pid>, renamed into place; nothing is left at OUTPUT on error).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "polar/data/records.h"
#include "polar/data/response_filter.h"
#include "polar/tokenizer/template.h"

namespace polar {

enum class PairingScheme { AllPairs, Paper };
PairingScheme parse_pairing_scheme(const std::string& name);  // "all-pairs" or "paper"
const char* pairing_scheme_name(PairingScheme scheme);

// Policy attributes for choosing negatives: a side file (gen_data's policies.json, a `polar
// sample` pool file) listing {"name", "family"[, "step"]} entries, as a JSON array or under
// "policies"; other keys of an entry are ignored (the file serves other readers too).
struct PolicyInfo {
  std::string family;
  double step = 0;
  bool has_step = false;
};
using PolicyTable = std::map<std::string, PolicyInfo, std::less<>>;
PolicyTable read_policy_table(const std::string& path);

enum class NegativeSource { Any, SameFamily, Mixed, Nearest };
struct NegativeSelection {
  NegativeSource source = NegativeSource::Any;
  double same_family_probability = 1.0;  // Mixed: P(draw from the reference's family)
};
// "any", "same-family", "mixed:P" (0 <= P <= 1) or "nearest"; throws naming the flag.
NegativeSelection parse_negative_selection(const std::string& text);
std::string negative_selection_name(const NegativeSelection& selection);

struct PairingOptions {
  int64_t negatives = 1;  // K: negatives per group, from K distinct other policies
  PairingScheme scheme = PairingScheme::AllPairs;
  NegativeSelection negatives_from;
  const PolicyTable* policies = nullptr;  // required unless negatives_from is Any
  int64_t groups_per_prompt = 0;          // all-pairs: cap (0 = every disjoint pair)
  int64_t passes = 1;                     // paper: groups per prompt
  uint64_t seed = 0;
};

struct PretrainBuildOptions {
  std::vector<std::string>
      trajectories;       // JSONL files or globs of {"prompt","policy","response"[,"category"]}
  std::string tokenizer;  // directory or .model file
  std::string output;     // dataset directory to create
  int64_t negatives = 1;  // K: negatives per group, from K distinct other policies
  uint64_t seed = 0;
  TemplateLimits limits;
  double eval_fraction = 0.05;
  TemplateKind template_kind = TemplateKind::Pretrain;
  PairingScheme pairing = PairingScheme::AllPairs;
  NegativeSelection negatives_from;
  std::string policies;  // policy table file ("" = none; needed unless --negatives-from any)
  int64_t groups_per_prompt = 0;  // all-pairs: 0 = every disjoint (reference, positive) pair
  int64_t passes = 1;             // paper scheme: groups per prompt
  bool skip_invalid = false;
  bool overwrite = false;
  // Loops, unfinished endings and aborted responses (data/response_filter.h); counted in the
  // manifest's records.response_filter.
  ResponseFilterOptions response_filter;
  int64_t groups_per_shard = 100000;
  // Out-of-core build.
  int64_t memory_budget = int64_t{4} << 30;  // bytes; sets the partition count and buffer sizes
  int64_t partitions = 0;                    // 0 = derived from the input size and the budget
  int threads = 0;                           // 0 = all cores
  int num_workers = 1;  // > 1: this process builds part worker_index of num_workers
  int worker_index = 0;
  std::string spill_dir;  // "" = inside the staging directory of the output
  bool progress = true;   // a progress line on stderr
};
struct PreferenceBuildOptions {
  std::string input;  // JSONL of {"prompt","reference","chosen","rejected"[,"category"]}
  std::string tokenizer;
  std::string output;
  uint64_t seed = 0;  // only used by the eval split
  TemplateLimits limits;
  double eval_fraction = 0.0;
  bool skip_invalid = false;
  bool overwrite = false;
  int64_t groups_per_shard = 100000;
};

// Which trajectories form each pre-training group, before tokenisation (record indices).
struct PlannedGroup {
  int64_t prompt = 0;               // index into GroupPlan::prompts
  int64_t reference = 0;            // index into the records
  std::vector<int64_t> candidates;  // [0] positive (reference's policy), [1..K] negatives
};

struct PlanCounts {
  int64_t duplicates = 0;  // trajectories dropped as repeats (same prompt, policy, response)
  int64_t positive_equals_reference = 0;  // groups dropped
  int64_t negative_equals_positive = 0;   // groups dropped
  std::map<std::string, int64_t> skipped_prompts_by_reason;
  // With a policy table: negatives from the reference's family / another family, and negatives
  // drawn from any policy because none of the wanted kind was left (--negatives-from).
  int64_t negatives_same_family = 0;
  int64_t negatives_other_family = 0;
  int64_t negatives_fallback = 0;
  void add(const PlanCounts& other);
};

struct GroupPlan {
  std::vector<std::string> prompts;  // every unique prompt, in (prompt_hash, prompt) order
  std::vector<PlannedGroup> groups;  // grouped by prompt, prompts in that order
  PlanCounts counts;
};

// In-memory planning of records (tests, small inputs): the same per-prompt planning the
// streaming builder runs on each partition.
GroupPlan plan_pretrain_groups(const std::vector<TrajectoryRecord>& records,
                               const PairingOptions& options);

// One prompt's trajectories, as views into the caller's storage.
struct TrajectoryView {
  std::string_view policy, response, category;
};
struct PromptGroup {  // indices into the prompt's trajectories after canonical_order()
  int64_t reference = 0;
  std::vector<int64_t> candidates;
};
// Sorts a prompt's trajectories by (policy, response, category) and removes repeats of
// (policy, response), counting them in counts.duplicates.
void canonical_order(std::vector<TrajectoryView>& trajectories, PlanCounts& counts);
// Plans the groups of one prompt from canonically ordered trajectories; deterministic for
// (trajectories, options, prompt_hash).
std::vector<PromptGroup> plan_prompt_groups(const std::vector<TrajectoryView>& trajectories,
                                            const PairingOptions& options, uint64_t prompt_hash,
                                            PlanCounts& counts);

// A stable 64-bit hash of a prompt (FNV-1a, then a mixer): orders and partitions prompts.
uint64_t prompt_hash(std::string_view prompt);
// The eval split by prompt: true for about `fraction` of all prompts, chosen by hash and seed.
bool prompt_is_eval(uint64_t prompt_hash, double fraction, uint64_t seed);

// Eval split by prompt: shuffles [0, n) with the seed; the first round(fraction * n) are eval.
// Returns one flag per prompt (true = eval).
std::vector<bool> split_eval_prompts(int64_t n, double fraction, uint64_t seed);

// Build a dataset directory; return the manifest (also written to OUTPUT/manifest.json).
// With num_workers > 1 the pre-training builder writes only its part, OUTPUT.part-I-of-W
// (a dataset of its prompts), and merge_pretrain_parts() joins the W parts into OUTPUT.
nlohmann::json build_pretrain_dataset(const PretrainBuildOptions& options);
nlohmann::json merge_pretrain_parts(const std::string& output, int num_workers, bool overwrite);
std::string pretrain_part_dir(const std::string& output, int worker_index, int num_workers);
nlohmann::json build_preference_dataset(const PreferenceBuildOptions& options);

}  // namespace polar
