// Shared builder pieces (see build_common.h), moved out of builder.cpp so the streaming
// pre-training builder and the preference builder write datasets the same way.
#include "build_common.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <filesystem>
#include <limits>
#include <thread>

#include "polar/common/error.h"

namespace polar::data_build {

namespace fs = std::filesystem;
using nlohmann::json;

uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = max - max % n;
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return x % n;
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

namespace {

// OUTPUT.tmp-<pid> directories whose process is gone (a killed build) are removed.
void remove_stale_staging(const std::string& output) {
  const fs::path target(output);
  const std::string prefix = target.filename().string() + ".tmp-";
  std::error_code ec;
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid_text = name.substr(prefix.size());
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos ||
        pid_text.size() > 9) {
      continue;
    }
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) {
      spdlog::warn("data: removing {} left by a build that did not finish", e.path().string());
      remove_tree(e.path().string());
    }
  }
}

}  // namespace

// Refuses an existing OUTPUT unless --overwrite, and even then only a dataset or empty directory.
static void check_output_target(const std::string& output, bool overwrite) {
  if (!fs::exists(output)) return;
  POLAR_CHECK(overwrite, output, ": already exists (pass --overwrite to replace it)");
  const bool dataset = fs::is_directory(output) &&
                       (fs::exists(fs::path(output) / "manifest.json") || fs::is_empty(output));
  POLAR_CHECK(dataset, output,
              ": exists and is not a polar dataset (no manifest.json); refusing to replace it");
}

// OUTPUT without trailing slashes, checked, its stale staging directories removed.
static std::string prepare_output(const std::string& output, bool overwrite) {
  POLAR_CHECK(!output.empty(), "--output: empty path");
  std::string target = output;
  while (target.size() > 1 && target.back() == '/') target.pop_back();
  check_output_target(target, overwrite);
  remove_stale_staging(target);
  return target;
}

StagedOutput::StagedOutput(const std::string& output, bool overwrite)
    : overwrite_(overwrite), staged_(prepare_output(output, overwrite)) {}

void StagedOutput::commit() {
  check_output_target(staged_.output(), overwrite_);
  staged_.commit();
}

int resolve_threads(int threads) {
  POLAR_CHECK(threads >= 0, "--threads must be >= 0 (0 = all cores), got ", threads);
  if (threads > 0) return threads;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

void parallel_for(size_t n, int threads, const std::function<void(size_t)>& fn) {
  const size_t n_threads =
      std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(resolve_threads(threads)), n));
  std::vector<std::exception_ptr> errors(n_threads);
  auto work = [&](size_t t) {
    try {
      for (size_t i = t; i < n; i += n_threads) fn(i);
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < n_threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

SplitWriters::SplitWriters(const std::string& root, TemplateKind kind, int64_t groups_per_shard,
                           int64_t shard_bytes)
    : train_((fs::path(root) / "train").string(), kind, groups_per_shard, shard_bytes),
      eval_((fs::path(root) / "eval").string(), kind, groups_per_shard, shard_bytes) {}

void SplitWriters::add(const std::optional<EncodedGroup>& group, int32_t category, bool is_eval) {
  if (!group) {
    ++dropped_too_long_;
    return;
  }
  if (group->prompt_tokens_cut > 0) ++groups_prompt_cut_;
  if (group->response_tokens_cut > 0) ++groups_response_cut_;
  prompt_tokens_cut_ += group->prompt_tokens_cut;
  response_tokens_cut_ += group->response_tokens_cut;
  Counts& c = is_eval ? eval_counts_ : train_counts_;
  ++c.groups;
  c.sequences += static_cast<int64_t>(group->candidates.size());
  c.pairs += static_cast<int64_t>(group->candidates.size()) - 1;
  for (const auto& cand : group->candidates) {
    c.sequence_tokens += static_cast<int64_t>(group->prefix.size() + cand.size());
  }
  (is_eval ? eval_ : train_).add(*group, category);
}

int64_t SplitWriters::groups() const { return train_counts_.groups + eval_counts_.groups; }

void SplitWriters::finish(const std::vector<std::string>& categories, const std::string& why_empty,
                          bool allow_empty) {
  POLAR_CHECK(allow_empty || groups() > 0, "no groups to write: ", why_empty, "; ",
              dropped_too_long_, " groups too long for --max-length");
  if (dropped_too_long_ > 0) {
    spdlog::warn(
        "data: dropped {} groups that do not fit --max-length even with the prompt cut away",
        dropped_too_long_);
  }
  train_.finish(categories);
  eval_.finish(categories);
}

json SplitWriters::counts() const {
  auto split = [](const Counts& c, const ShardWriter& w) {
    return json{{"groups", c.groups},
                {"sequences", c.sequences},
                {"pairs", c.pairs},
                {"sequence_tokens", c.sequence_tokens},
                {"stored_tokens", w.tokens()}};
  };
  return {{"train", split(train_counts_, train_)}, {"eval", split(eval_counts_, eval_)}};
}

json SplitWriters::truncation() const {
  return {{"groups_prompt_cut", groups_prompt_cut_},
          {"prompt_tokens_cut", prompt_tokens_cut_},
          {"groups_response_cut", groups_response_cut_},
          {"response_tokens_cut", response_tokens_cut_},
          {"groups_dropped_too_long", dropped_too_long_}};
}

CategoryTable::CategoryTable(std::vector<std::string> all) {
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  names = std::move(all);
  for (size_t i = 0; i < names.size(); ++i) ids[names[i]] = static_cast<int32_t>(i);
}

void check_limits(const TemplateLimits& limits, double eval_fraction) {
  POLAR_CHECK(limits.max_length > 2, "--max-length must be > 2, got ", limits.max_length);
  POLAR_CHECK(limits.max_response_length > 0, "--max-response-length must be positive, got ",
              limits.max_response_length);
  POLAR_CHECK(eval_fraction >= 0.0 && eval_fraction <= 1.0,
              "--eval-fraction must be in [0, 1], got ", eval_fraction);
}

}  // namespace polar::data_build
