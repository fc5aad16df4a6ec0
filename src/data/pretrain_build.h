// Internals of the out-of-core pre-training builder shared by pretrain_builder.cpp (the passes),
// pretrain_partition.cpp (one partition's groups) and pretrain_manifest.cpp (manifest, merge).
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "build_common.h"
#include "polar/data/builder.h"

namespace polar::data_build {

// The spill directory, removed with everything in it when the build ends (or fails).
class SpillDirectory {
 public:
  explicit SpillDirectory(std::string dir) : dir_(std::move(dir)) {}
  ~SpillDirectory() { remove(); }
  void remove() { remove_tree(dir_); }

 private:
  std::string dir_;
};

// The progress line on stderr: bytes read, records/s and ETA in pass 1, partitions in pass 2.
// Redrawn in place on a terminal (at most 4 times a second), one line per 15 s otherwise.
class BuildProgress {
 public:
  BuildProgress(bool enabled, int64_t total_bytes, int64_t partitions);
  void reading(int64_t bytes, int64_t records);
  void building(int64_t partitions_done, int64_t groups);
  void finish();

 private:
  bool due();
  void print(const std::string& text);
  bool enabled_, tty_;
  int64_t total_bytes_, partitions_;
  std::chrono::steady_clock::time_point start_, last_;
  bool printed_ = false;
};

// Builds the groups of one partition after another into the split writers and keeps the counts.
class PartitionBuilder {
 public:
  PartitionBuilder(const PretrainBuildOptions& o, const Tokenizer& tok,
                   const CategoryTable& categories, SplitWriters& writers, int64_t chunk_bytes);
  void build(const std::string& spill_path);
  nlohmann::json manifest_counts(const ReadStats& stats, const SplitWriters& writers) const;

  PlanCounts counts;
  int64_t prompts_total = 0, prompts_train = 0, prompts_eval = 0, planned_groups = 0;

 private:
  struct PromptWork;
  void flush(std::vector<PromptWork>& chunk);
  const PretrainBuildOptions& o_;
  PolicyTable policy_table_;  // from --policies, for --negatives-from
  PairingOptions pairing_;
  const Tokenizer& tok_;
  const CategoryTable& categories_;
  SplitWriters& writers_;
  int64_t chunk_bytes_;
};

nlohmann::json pretrain_settings(const PretrainBuildOptions& o,
                                 const std::vector<std::string>& files, const Tokenizer& tok);
// The one writer of pre-training manifests (whole builds, worker parts and merges).
nlohmann::json pretrain_manifest(const std::string& kind, const nlohmann::json& counts,
                                 const std::vector<std::string>& categories,
                                 const nlohmann::json& settings, const nlohmann::json& build);
int64_t peak_rss_bytes();  // VmHWM of this process

}  // namespace polar::data_build
