// One partition of the out-of-core pre-training build: load its spill file, put each prompt's
// trajectories in canonical order, plan its groups, then tokenise and encode them a chunk of
// prompts at a time on all threads and hand them to the split writers in (hash, prompt) order.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>

#include "polar/common/error.h"
#include "pretrain_build.h"
#include "spill.h"

namespace polar::data_build {

using nlohmann::json;

struct PartitionBuilder::PromptWork {
  std::string_view prompt;
  uint64_t hash = 0;
  std::vector<TrajectoryView> trajectories;
  std::vector<PromptGroup> groups;
};

PartitionBuilder::PartitionBuilder(const PretrainBuildOptions& o, const Tokenizer& tok,
                                   const CategoryTable& categories, SplitWriters& writers,
                                   int64_t chunk_bytes)
    : o_(o), tok_(tok), categories_(categories), writers_(writers), chunk_bytes_(chunk_bytes) {
  pairing_.negatives = o.negatives;
  pairing_.scheme = o.pairing;
  pairing_.groups_per_prompt = o.groups_per_prompt;
  pairing_.passes = o.passes;
  pairing_.seed = o.seed;
  pairing_.negatives_from = o.negatives_from;
  if (!o.policies.empty()) {
    policy_table_ = read_policy_table(o.policies);
    pairing_.policies = &policy_table_;
  }
}

void PartitionBuilder::build(const std::string& spill_path) {
  std::string storage;
  const std::vector<SpilledRecord> records = load_spill(spill_path, storage);
  std::vector<PromptWork> chunk;
  int64_t chunk_text = 0;
  for (size_t begin = 0; begin < records.size();) {
    size_t end = begin + 1;
    while (end < records.size() && records[end].hash == records[begin].hash &&
           records[end].prompt == records[begin].prompt) {
      ++end;
    }
    PromptWork w;
    w.prompt = records[begin].prompt;
    w.hash = records[begin].hash;
    for (size_t i = begin; i < end; ++i) {
      w.trajectories.push_back({records[i].policy, records[i].response, records[i].category});
    }
    begin = end;
    ++prompts_total;
    canonical_order(w.trajectories, counts);
    w.groups = plan_prompt_groups(w.trajectories, pairing_, w.hash, counts);
    if (w.groups.empty()) continue;
    chunk_text += static_cast<int64_t>(w.prompt.size());
    for (const auto& t : w.trajectories) chunk_text += static_cast<int64_t>(t.response.size());
    chunk.push_back(std::move(w));
    if (chunk_text >= chunk_bytes_) {
      flush(chunk);
      chunk_text = 0;
    }
  }
  flush(chunk);
}

void PartitionBuilder::flush(std::vector<PromptWork>& chunk) {
  struct Job {
    size_t prompt;
    const PromptGroup* group;
  };
  std::vector<Job> jobs;
  for (size_t p = 0; p < chunk.size(); ++p) {
    for (const auto& g : chunk[p].groups) jobs.push_back({p, &g});
  }
  // Each (prompt, reference) and (prompt, candidate) run is encoded as one string, as POLAR's
  // client and the serving engines do (tokenizer/template.h), so the ids match theirs.
  std::vector<std::optional<EncodedGroup>> encoded(jobs.size());
  parallel_for(jobs.size(), o_.threads, [&](size_t j) {
    const auto& [p, g] = jobs[j];
    const PromptWork& w = chunk[p];
    std::vector<std::string> candidates;
    for (int64_t k : g->candidates)
      candidates.emplace_back(w.trajectories[static_cast<size_t>(k)].response);
    const std::string reference(w.trajectories[static_cast<size_t>(g->reference)].response);
    encoded[j] = encode_group_text(tok_, o_.template_kind, std::string(w.prompt), reference,
                                   candidates, o_.limits);
  });
  size_t j = 0;
  for (size_t p = 0; p < chunk.size(); ++p) {
    const PromptWork& w = chunk[p];
    const bool is_eval = prompt_is_eval(w.hash, o_.eval_fraction, o_.seed);
    ++(is_eval ? prompts_eval : prompts_train);
    for (const auto& g : w.groups) {
      const std::string category(w.trajectories[static_cast<size_t>(g.reference)].category);
      writers_.add(encoded[j], categories_.ids.at(category), is_eval);
      encoded[j++].reset();
      ++planned_groups;
    }
  }
  chunk.clear();
}

json PartitionBuilder::manifest_counts(const ReadStats& stats, const SplitWriters& writers) const {
  json records = stats.to_json();
  records["duplicates"] = counts.duplicates;
  int64_t skipped = 0;
  for (const auto& [reason, n] : counts.skipped_prompts_by_reason) skipped += n;
  return {{"records", records},
          {"prompts",
           {{"total", prompts_total},
            {"train", prompts_train},
            {"eval", prompts_eval},
            {"skipped", skipped},
            {"skipped_by_reason", counts.skipped_prompts_by_reason}}},
          {"planned_groups", planned_groups},
          {"groups_dropped",
           {{"positive_equals_reference", counts.positive_equals_reference},
            {"negative_equals_positive", counts.negative_equals_positive}}},
          {"negatives",
           {{"same_family", counts.negatives_same_family},
            {"other_family", counts.negatives_other_family},
            {"fallback_to_any", counts.negatives_fallback}}},
          {"splits", writers.counts()},
          {"truncation", writers.truncation()}};
}

// ---------------------------------------------------------------------------------------------

BuildProgress::BuildProgress(bool enabled, int64_t total_bytes, int64_t partitions)
    : enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) != 0),
      total_bytes_(total_bytes),
      partitions_(partitions),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

bool BuildProgress::due() {
  if (!enabled_) return false;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_ < std::chrono::milliseconds(tty_ ? 250 : 15000)) return false;
  last_ = now;
  return true;
}

void BuildProgress::print(const std::string& text) {
  std::fprintf(stderr, tty_ ? "\r%-100s" : "%s\n", text.c_str());
  std::fflush(stderr);
  printed_ = true;
}

void BuildProgress::reading(int64_t bytes, int64_t records) {
  if (!due()) return;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double fraction =
      total_bytes_ > 0 ? static_cast<double>(bytes) / static_cast<double>(total_bytes_) : 0.0;
  const double eta = fraction > 0 ? seconds * (1.0 - fraction) / fraction : 0.0;
  char line[160];
  std::snprintf(
      line, sizeof(line), "data: pass 1/2 read %.1f / %.1f MB (%.0f%%), %.0f records/s, ETA %.0f s",
      bytes / 1e6, total_bytes_ / 1e6, 100 * fraction, records / std::max(seconds, 1e-9), eta);
  print(line);
}

void BuildProgress::building(int64_t partitions_done, int64_t groups) {
  if (!due()) return;
  char line[160];
  std::snprintf(line, sizeof(line), "data: pass 2/2 partition %lld / %lld, %lld groups written",
                static_cast<long long>(partitions_done), static_cast<long long>(partitions_),
                static_cast<long long>(groups));
  print(line);
}

void BuildProgress::finish() {
  if (enabled_ && tty_ && printed_) std::fprintf(stderr, "\n");
}

int64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmHWM:") {
      int64_t kib = 0;
      status >> kib;
      return kib * 1024;
    }
    status.ignore(1 << 20, '\n');
  }
  return 0;
}

}  // namespace polar::data_build
