// `polar data pretrain`, out of core (see builder.h): pass 1 streams the inputs into hash
// partitions on disk, pass 2 builds, tokenises and writes each partition's groups in turn.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "build_common.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/data/builder.h"
#include "polar/data/line_reader.h"
#include "polar/data/response_filter.h"
#include "pretrain_build.h"
#include "spill.h"

namespace polar {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace data_build;

namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

// Sizes derived from --memory-budget. Pass 2 holds one partition's spill bytes plus ~72 bytes
// of index per record, a chunk of texts with their tokens and encoded groups, and one pending
// shard per split (twice, while it is written): partitions get a fifth of the budget.
struct BudgetPlan {
  int64_t partitions = 1;
  size_t spill_buffer = 0;  // write buffer per partition file
  size_t read_block = 0;    // bytes of lines parsed together in pass 1
  int64_t chunk_bytes = 0;  // text bytes tokenised together in pass 2
  int64_t shard_bytes = 0;
  int64_t partition_bytes = 0;  // the records a partition is meant to hold (a fifth of the budget)
};

bool compressed_name(const std::string& path) {
  auto ends = [&](const char* suffix) {
    const std::string s(suffix);
    return path.size() >= s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0;
  };
  return ends(".gz") || ends(".zst");
}

BudgetPlan plan_budget(const PretrainBuildOptions& o, const std::vector<std::string>& files) {
  POLAR_CHECK(o.memory_budget >= 64 * 1024, "--memory-budget must be at least 64KiB, got ",
              o.memory_budget, " bytes");
  POLAR_CHECK(o.partitions >= 0, "--partitions must be >= 0 (0 = from the budget), got ",
              o.partitions);
  int64_t estimate = 0;  // record bytes this worker will spill; compressed JSONL expands about 5x
  for (const auto& f : files) estimate += total_file_bytes({f}) * (compressed_name(f) ? 5 : 1);
  estimate /= o.num_workers;
  BudgetPlan b;
  const int64_t per_partition = o.memory_budget / 5;
  b.partition_bytes = per_partition;
  b.partitions = o.partitions > 0
                     ? o.partitions
                     : std::max<int64_t>(1, (estimate + per_partition - 1) / per_partition);
  POLAR_CHECK(b.partitions <= 4096, "the input needs ", b.partitions,
              " partitions at this --memory-budget (at most 4096 spill files are kept open): raise "
              "the budget");
  b.spill_buffer =
      static_cast<size_t>(std::clamp<int64_t>(o.memory_budget / 16 / b.partitions, 4096, kMiB));
  b.read_block = static_cast<size_t>(std::clamp<int64_t>(o.memory_budget / 32, kMiB, 16 * kMiB));
  b.chunk_bytes = std::max<int64_t>(kMiB, o.memory_budget / 32);
  b.shard_bytes = std::clamp<int64_t>(o.memory_budget / 32, kMiB, kDefaultShardBytes);
  return b;
}

std::string megabytes(int64_t bytes) {
  return fmt::format("{:.{}f} MB", bytes / 1e6, bytes < 1000000 ? 3 : 1);
}

// The budget as given: 2GiB reads "2048 MiB", 64KiB "64 KiB".
std::string budget_text(int64_t bytes) {
  if (bytes % kMiB == 0) return fmt::format("{} MiB", bytes / kMiB);
  return bytes % 1024 == 0 ? fmt::format("{} KiB", bytes / 1024) : fmt::format("{} byte", bytes);
}

// All of a prompt's trajectories are in one partition and pass 2 loads a partition whole, so a
// prompt (or a hash-skewed set of prompts) larger than a partition's share cannot be split: the
// build stays correct, but its memory exceeds the budget by about the excess. Said once.
void warn_oversized(int64_t bytes, const BudgetPlan& b, const PretrainBuildOptions& o) {
  spdlog::warn(
      "data: a partition holds {} of records, more than the {} a partition may hold at a {} "
      "--memory-budget "
      "(its prompts have that many trajectories, and one prompt's are never split): the build goes "
      "on, but peak "
      "memory exceeds the budget by about the difference; raise --memory-budget to stay within it "
      "(the manifest's "
      "build.largest_partition_bytes gives the largest)",
      megabytes(bytes), megabytes(b.partition_bytes), budget_text(o.memory_budget));
}

// Pass 1: every input line is parsed (on all threads, a block at a time); records of this
// worker's hash range go to their partition's spill file. Bad lines fail (or are skipped) in
// file and line order.
struct Pass1 {
  ReadStats stats;
  ResponseFilterCounts filter;
  std::set<std::string> categories;
  int64_t spilled = 0;
};

void spill_block(const std::string& file, std::vector<std::string>& lines,
                 const std::vector<int64_t>& line_nos, const PretrainBuildOptions& o,
                 const HashRange& range, SpillWriter& spill, Pass1& out) {
  const size_t n = lines.size();
  std::vector<TrajectoryRecord> records(n);
  std::vector<LineParse> status(n);
  std::vector<std::string> reasons(n), messages(n);
  std::vector<uint64_t> hashes(n);
  parallel_for(n, o.threads, [&](size_t i) {
    status[i] = parse_trajectory_line(lines[i], records[i], reasons[i], messages[i]);
    if (status[i] == LineParse::Record) hashes[i] = prompt_hash(records[i].prompt);
  });
  for (size_t i = 0; i < n; ++i) {
    if (status[i] == LineParse::Blank) continue;
    ++out.stats.lines;
    if (status[i] == LineParse::Invalid) {
      out.stats.add_invalid(file + ":" + std::to_string(line_nos[i]) + ": " + messages[i],
                            reasons[i], o.skip_invalid);
      continue;
    }
    ++out.stats.accepted;
    TrajectoryRecord& r = records[i];
    if (!r.dropped.empty()) {  // dropped by `polar sample`'s filter, kept there for resuming
      out.filter.add_dropped(r.dropped);
      continue;
    }
    FilteredResponse f = filter_response(r.response, r.finish, o.response_filter, out.filter);
    if (!f.keep) continue;
    r.response = std::move(f.text);
    out.categories.insert(r.category);
    if (!range.contains(hashes[i])) continue;
    spill.add(range.partition(hashes[i]), hashes[i], records[i]);
    ++out.spilled;
  }
}

Pass1 stream_inputs(const std::vector<std::string>& files, const PretrainBuildOptions& o,
                    const HashRange& range, const BudgetPlan& budget, SpillWriter& spill,
                    BuildProgress& progress) {
  Pass1 out;
  int64_t done_bytes = 0;
  std::vector<std::string> lines;
  std::vector<int64_t> line_nos;
  for (const auto& file : files) {
    LineReader reader(file);
    std::string line;
    bool more = true;
    while (more) {
      lines.clear();
      line_nos.clear();
      size_t block = 0;
      while (block < budget.read_block && (more = reader.next(line))) {
        block += line.size();
        lines.push_back(std::move(line));
        line_nos.push_back(reader.line_number());
      }
      spill_block(file, lines, line_nos, o, range, spill, out);
      progress.reading(done_bytes + reader.file_bytes_read(), out.stats.lines);
    }
    done_bytes += reader.file_bytes_read();
  }
  spill.close();
  return out;
}

}  // namespace

json build_pretrain_dataset(const PretrainBuildOptions& o) {
  POLAR_CHECK(!o.trajectories.empty(), "--trajectories: no input files");
  POLAR_CHECK(o.negatives >= 1, "--negatives must be >= 1, got ", o.negatives);
  POLAR_CHECK(o.groups_per_prompt >= 0, "--groups-per-prompt must be >= 0, got ",
              o.groups_per_prompt);
  POLAR_CHECK(o.passes >= 1, "--passes must be >= 1, got ", o.passes);
  check_limits(o.limits, o.eval_fraction);
  const std::vector<std::string> files = expand_input_patterns(o.trajectories);
  const HashRange worker_range(o.worker_index, o.num_workers, 1);  // validates the worker flags
  const BudgetPlan budget = plan_budget(o, files);
  const bool part = o.num_workers > 1;
  StagedOutput staged(part ? pretrain_part_dir(o.output, o.worker_index, o.num_workers) : o.output,
                      o.overwrite);
  const Tokenizer tok = Tokenizer::load(o.tokenizer);
  POLAR_CHECK(o.negatives_from.source == NegativeSource::Any || !o.policies.empty(),
              "--negatives-from ", negative_selection_name(o.negatives_from),
              " needs the policies' families: give --policies FILE");
  if (!o.policies.empty()) read_policy_table(o.policies);  // refused before any input is read

  const std::string spill_dir = (fs::path(o.spill_dir.empty() ? staged.tmp() : o.spill_dir) /
                                 ("spill-" + std::to_string(::getpid())))
                                    .string();
  SpillDirectory spill_cleanup(spill_dir);
  const HashRange range(o.worker_index, o.num_workers, budget.partitions);
  BuildProgress progress(o.progress, total_file_bytes(files), budget.partitions);
  spdlog::info("data: {} input files, {:.1f} MB; {} partitions for a {} budget{}", files.size(),
               total_file_bytes(files) / 1e6, budget.partitions, budget_text(o.memory_budget),
               part ? fmt::format(", worker {} of {}", o.worker_index, o.num_workers) : "");
  Pass1 pass1;
  {
    SpillWriter spill(spill_dir, budget.partitions, budget.spill_buffer);
    pass1 = stream_inputs(files, o, range, budget, spill, progress);
  }
  const CategoryTable categories(
      std::vector<std::string>(pass1.categories.begin(), pass1.categories.end()));

  SplitWriters writers(staged.tmp(), o.template_kind, o.groups_per_shard, budget.shard_bytes);
  PartitionBuilder builder(o, tok, categories, writers, budget.chunk_bytes);
  int64_t largest_partition = 0;
  for (int64_t p = 0; p < budget.partitions; ++p) {
    const std::string path = spill_file(spill_dir, p);
    const int64_t bytes = static_cast<int64_t>(fs::file_size(path));
    if (bytes > budget.partition_bytes && largest_partition <= budget.partition_bytes)
      warn_oversized(bytes, budget, o);
    largest_partition = std::max(largest_partition, bytes);
    builder.build(path);
    fs::remove(path);
    progress.building(p + 1, writers.groups());
  }
  progress.finish();
  spill_cleanup.remove();
  writers.finish(categories.names,
                 why_no_groups(files, pass1.stats, builder.counts.skipped_prompts_by_reason,
                               builder.planned_groups),
                 part);
  tok.save((fs::path(staged.tmp()) / "tokenizer").string());

  json counts = builder.manifest_counts(pass1.stats, writers);
  counts["records"]["response_filter"] = pass1.filter.to_json();
  const json build = {{"num_workers", o.num_workers},
                      {"partitions", budget.partitions},
                      {"memory_budget", o.memory_budget},
                      {"largest_partition_bytes", largest_partition}};
  json settings = pretrain_settings(o, files, tok);
  if (part) settings["worker_index"] = o.worker_index;
  const json manifest = pretrain_manifest(part ? "pretrain-part" : "pretrain", counts,
                                          categories.names, settings, build);
  write_json_file_atomic((fs::path(staged.tmp()) / "manifest.json").string(), manifest);
  staged.commit();
  spdlog::info("data: peak resident memory {:.0f} MiB", peak_rss_bytes() / double(kMiB));
  return manifest;
}

}  // namespace polar
