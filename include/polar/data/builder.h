// Dataset builders behind `polar data pretrain|preference`: JSONL records -> token shards.
//
// Pre-training groups (POLAR policy discrimination): trajectories are grouped by prompt, then by
// policy. A policy A with two trajectories gives reference = A_i and positive = A_j; the K
// negatives are one random trajectory each from K distinct other policies. Every disjoint
// (reference, positive) pair of every policy is used unless groups_per_prompt caps it.
// Preference groups: one per record, prefix(prompt, reference) + [chosen, rejected].
// Both split train/eval by prompt, so a prompt never appears in both, and write the layout of
// shards.h atomically (OUTPUT.tmp-<pid>, renamed into place; nothing is left at OUTPUT on error).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "polar/data/records.h"
#include "polar/tokenizer/template.h"

namespace polar {

struct PretrainBuildOptions {
  std::vector<std::string> trajectories;  // JSONL files of {"prompt","policy","response"[,"category"]}
  std::string tokenizer;                  // directory or .model file
  std::string output;                     // dataset directory to create
  int64_t negatives = 1;                  // K: negatives per group, from K distinct other policies
  uint64_t seed = 0;
  TemplateLimits limits;
  double eval_fraction = 0.05;
  TemplateKind template_kind = TemplateKind::Pretrain;
  int64_t groups_per_prompt = 0;  // 0 = every disjoint (reference, positive) pair
  bool skip_invalid = false;
  bool overwrite = false;
  int64_t groups_per_shard = 100000;
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

struct GroupPlan {
  std::vector<std::string> prompts;   // every unique prompt, sorted
  std::vector<PlannedGroup> groups;   // grouped by prompt, prompts in sorted order
  std::map<std::string, int64_t> skipped_prompts_by_reason;
};

// Deterministic for (records, seed): iterates sorted prompts and policies with one mt19937_64.
GroupPlan plan_pretrain_groups(const std::vector<TrajectoryRecord>& records, int64_t negatives,
                               int64_t groups_per_prompt, uint64_t seed);

// Eval split by prompt: shuffles [0, n) with the seed; the first round(fraction * n) are eval.
// Returns one flag per prompt (true = eval).
std::vector<bool> split_eval_prompts(int64_t n, double fraction, uint64_t seed);

// Build a dataset directory; return the manifest (also written to OUTPUT/manifest.json).
nlohmann::json build_pretrain_dataset(const PretrainBuildOptions& options);
nlohmann::json build_preference_dataset(const PreferenceBuildOptions& options);

}  // namespace polar
