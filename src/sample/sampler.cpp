// The `polar sample` run: resume from the output, check every policy, then
// sample policy by policy, appending one JSON line per finished job; see
// sample/sampler.h.
#include "polar/sample/sampler.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <tuple>

#include "polar/common/error.h"
#include "polar/data/builder.h"
#include "polar/data/records.h"

namespace polar::sample {

namespace fs = std::filesystem;
using nlohmann::json;
using Key = std::tuple<std::string, std::string, int64_t>;  // (policy, prompt_id, sample)

namespace {

int64_t int_field(const json& obj, const char* key, const std::string& where) {
  POLAR_CHECK(obj.contains(key) && obj[key].is_number_integer(), where, ": \"", key,
              "\" is missing or not an integer; the output was not written by "
              "`polar sample` (use a new --output)");
  return obj[key].get<int64_t>();
}

// The keys already in `path`, and how many of them belong to prompts not in `ids`. A last line
// without its newline (a run killed mid-write) is cut off.
std::set<Key> read_existing(const std::string& path, const std::set<std::string>& ids,
                            int64_t& other_prompts) {
  std::set<Key> keys;
  if (!fs::exists(path)) return keys;
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    POLAR_CHECK(in.good(), path, ": cannot read the existing output");
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t complete = bytes.empty() ? 0 : bytes.rfind('\n') + 1;  // npos + 1 == 0
  if (complete < bytes.size()) {
    spdlog::warn(
        "{}: dropping an unfinished last line ({} bytes) left by an "
        "interrupted run",
        path, bytes.size() - complete);
    fs::resize_file(path, complete);
  }
  int64_t line_no = 0;
  size_t start = 0;
  while (start < complete) {
    const size_t end = bytes.find('\n', start);
    const std::string line = bytes.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    const json obj = json::parse(line, nullptr, /*allow_exceptions=*/false);
    POLAR_CHECK(obj.is_object() && obj.contains("policy") && obj["policy"].is_string() &&
                    obj.contains("prompt"),
                where, ": expected a record of `polar sample` (use a new --output)");
    const int64_t sample = int_field(obj, "sample", where);
    // Records of older versions have no prompt_id: the prompt text gives it.
    const std::string id = obj.contains("prompt_id") && obj["prompt_id"].is_string()
                               ? obj["prompt_id"].get<std::string>()
                               : prompt_id(render_text_field(obj["prompt"], where));
    if (!ids.count(id)) ++other_prompts;
    keys.emplace(obj["policy"].get<std::string>(), id, sample);
  }
  return keys;
}

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", static_cast<long>(s / 3600),
                  static_cast<long>(s / 60 % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", static_cast<long>(s / 60),
                  static_cast<long>(s % 60));
  }
  return buf;
}

// Appends records and keeps the progress line; thread-safe.
class Writer {
 public:
  Writer(const std::string& path, int64_t total, bool progress)
      : path_(path), total_(total), progress_(progress) {
    file_ = std::fopen(path.c_str(), "ab");
    POLAR_CHECK(file_ != nullptr, path, ": cannot open for appending");
    start_ = last_print_ = std::chrono::steady_clock::now();
  }
  ~Writer() {
    if (file_) std::fclose(file_);
  }

  void write(const json& record, int64_t tokens, const std::string& policy) {
    const std::string line = record.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    std::lock_guard<std::mutex> lock(mutex_);
    POLAR_CHECK(
        std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0,
        path_, ": write failed");
    ++written_;
    if (tokens > 0) tokens_ += tokens;
    print(policy, false);
  }

  void finish() {
    std::lock_guard<std::mutex> lock(mutex_);
    ::fsync(::fileno(file_));
    if (progress_ && written_ > 0) print("", true);
  }

  int64_t written() const { return written_; }
  int64_t tokens() const { return tokens_; }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  void print(const std::string& policy, bool final) {
    const auto now = std::chrono::steady_clock::now();
    if (!progress_ || (!final && now - last_print_ < std::chrono::milliseconds(500))) return;
    last_print_ = now;
    const double elapsed = seconds();
    const double rate = written_ / std::max(elapsed, 1e-9);
    const std::string eta = written_ > 0 ? format_duration((total_ - written_) / rate) : "?";
    std::fprintf(stderr,
                 "\r[sample] %ld/%ld samples%s%s | %.1f samples/s, %.1f "
                 "tokens/s | elapsed %s, ETA %s   %s",
                 static_cast<long>(written_), static_cast<long>(total_),
                 policy.empty() ? "" : " | policy ", policy.c_str(), rate,
                 tokens_ / std::max(elapsed, 1e-9), format_duration(elapsed).c_str(), eta.c_str(),
                 final ? "\n" : "");
    std::fflush(stderr);
  }

  std::string path_;
  std::FILE* file_ = nullptr;
  int64_t total_, written_ = 0, tokens_ = 0;
  bool progress_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace

SampleScheme parse_sample_scheme(const std::string& name) {
  if (name == "paper") return SampleScheme::Paper;
  if (name == "all") return SampleScheme::All;
  throw Error("--scheme: expected \"paper\" or \"all\", got \"" + name + "\"");
}

std::string prompt_id(const std::string& text) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(prompt_hash(text)));
  return buf;
}

std::vector<std::pair<size_t, int64_t>> paper_assignment(const std::vector<PolicySpec>& policies,
                                                         const Prompt& prompt, uint64_t seed) {
  POLAR_CHECK(policies.size() >= 2, "--scheme paper needs at least two policies in the pool");
  const PolicyKind wanted = prompt.instruction ? PolicyKind::Chat : PolicyKind::Base;
  std::vector<size_t> candidates;
  for (size_t p = 0; p < policies.size(); ++p) {
    if (policies[p].kind == wanted) candidates.push_back(p);
  }
  if (candidates.size() < 2) {  // too few of the prompt's kind: any policy
    candidates.resize(policies.size());
    for (size_t p = 0; p < policies.size(); ++p) candidates[p] = p;
  }
  // Seeded by the prompt text, so the draw does not depend on the other prompts.
  std::mt19937_64 rng(
      sample_seed(seed, "paper-scheme", static_cast<int64_t>(prompt_hash(prompt.text)), 0));
  const size_t a = std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(rng);
  size_t b = std::uniform_int_distribution<size_t>(0, candidates.size() - 2)(rng);
  if (b >= a) ++b;
  return {{candidates[a], 2}, {candidates[b], 1}};
}

json SampleRunStats::to_json() const {
  return {{"written", written},
          {"existing", existing},
          {"other_prompts", other_prompts},
          {"tokens", tokens},
          {"prompts_cut", prompts_cut},
          {"context_skipped", context_skipped},
          {"response_filter", filter.to_json()},
          {"seconds", seconds}};
}

namespace {

// Per policy, the samples still to draw; `total` counts every distinct sample of the run.
struct SamplePlan {
  std::vector<std::vector<SampleJob>> jobs;
  int64_t pending = 0;
  int64_t total = 0;
};

SamplePlan plan_jobs(const SampleRunOptions& options, const std::vector<std::string>& ids,
                     const std::set<Key>& existing) {
  SamplePlan plan;
  plan.jobs.resize(options.policies.size());
  std::set<Key> planned;  // a prompt given twice is sampled once
  auto add = [&](size_t p, int64_t i, int64_t s) {
    const std::string& name = options.policies[p].name;
    const Key key{name, ids[i], s};
    if (!planned.insert(key).second) return;
    ++plan.total;
    if (existing.count(key)) return;
    plan.jobs[p].push_back(
        {i, s,
         sample_seed(options.seed, name, static_cast<int64_t>(prompt_hash(options.prompts[i].text)),
                     s)});
    ++plan.pending;
  };
  for (int64_t i = 0; i < static_cast<int64_t>(options.prompts.size()); ++i) {
    if (options.scheme == SampleScheme::Paper) {
      for (const auto& [p, n] :
           paper_assignment(options.policies, options.prompts[i], options.seed))
        for (int64_t s = 0; s < n; ++s) add(p, i, s);
    } else {
      for (size_t p = 0; p < options.policies.size(); ++p)
        for (int64_t s = 0; s < options.samples_per_prompt; ++s) add(p, i, s);
    }
  }
  return plan;
}

json sample_record(const Prompt& prompt, const std::string& policy, const std::string& id,
                   const SampleJob& job, const JobResult& result, const FilteredResponse& f) {
  json record = {
      {"prompt", prompt.text}, {"policy", policy}, {"response", f.keep ? f.text : result.text}};
  if (!prompt.category.empty()) record["category"] = prompt.category;
  record["prompt_id"] = id;
  record["sample"] = job.sample;
  record["finish"] = result.finish;
  json filtered = json::array();
  if (f.loop_truncated) filtered.push_back("loop");
  if (f.unfinished_cut) filtered.push_back("unfinished_cut");
  if (!filtered.empty()) record["filtered"] = filtered;
  if (!f.keep) record["dropped"] = f.dropped;
  if (result.prompt_cut) record["prompt_cut"] = true;
  return record;
}

// Runs every policy's jobs in turn, writing each kept response as it finishes.
void sample_policies(const SampleRunOptions& options, const std::vector<std::string>& ids,
                     const SamplePlan& plan, Writer& writer, SampleRunStats& stats) {
  std::mutex stats_mutex;
  for (size_t p = 0; p < options.policies.size(); ++p) {
    if (plan.jobs[p].empty()) continue;
    const PolicySpec& policy = options.policies[p];
    auto backend = open_backend(policy);
    backend->run(plan.jobs[p], options.prompts, [&](const SampleJob& job, const JobResult& result) {
      FilteredResponse f;
      {
        std::lock_guard<std::mutex> lock(stats_mutex);
        if (result.context_skipped) {
          ++stats.context_skipped;
          return;
        }
        if (result.prompt_cut) ++stats.prompts_cut;
        f = filter_response(result.text, result.finish, options.filter, stats.filter);
      }
      if (f.dropped == "aborted") return;  // not written: a re-run asks again
      const json record = sample_record(options.prompts[job.prompt_index], policy.name,
                                        ids[job.prompt_index], job, result, f);
      writer.write(record, result.tokens, policy.name);
    });
  }
}

}  // namespace

SampleRunStats run_sampling(const SampleRunOptions& options) {
  POLAR_CHECK(!options.policies.empty(), "polar sample: the pool has no policies");
  POLAR_CHECK(!options.prompts.empty(), "polar sample: no prompts");
  POLAR_CHECK(options.samples_per_prompt >= 1, "--samples-per-prompt: expected an integer >= 1");
  std::vector<std::string> ids;
  for (const auto& p : options.prompts) ids.push_back(prompt_id(p.text));
  SampleRunStats stats;
  const std::set<Key> existing = read_existing(
      options.output, std::set<std::string>(ids.begin(), ids.end()), stats.other_prompts);
  const SamplePlan plan = plan_jobs(options, ids, existing);
  stats.existing = static_cast<int64_t>(existing.size());
  spdlog::info(
      "polar sample: scheme {}, {} policies, {} prompts, {} samples; {} already in {}{}, {} to "
      "sample",
      options.scheme == SampleScheme::Paper ? "paper" : "all", options.policies.size(),
      options.prompts.size(), plan.total, existing.size(), options.output,
      stats.other_prompts > 0
          ? fmt::format(" ({} of prompts not in this run, kept)", stats.other_prompts)
          : "",
      plan.pending);
  if (plan.pending == 0) return stats;
  // Every policy with work left is checked before the first sample: a bad entry
  // fails now.
  for (size_t p = 0; p < options.policies.size(); ++p) {
    if (!plan.jobs[p].empty()) open_backend(options.policies[p]);
  }
  Writer writer(options.output, plan.pending, options.progress);
  try {
    sample_policies(options, ids, plan, writer, stats);
  } catch (const Error& e) {
    writer.finish();
    throw Error(std::string(e.what()) + " (" + std::to_string(writer.written()) +
                " records written to " + options.output +
                " are kept; re-run the same command to continue)");
  }
  writer.finish();
  stats.written = writer.written();
  stats.tokens = writer.tokens();
  stats.seconds = writer.seconds();
  return stats;
}

}  // namespace polar::sample
