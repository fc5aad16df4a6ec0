// Dataset builders: plan POLAR groups from records, tokenise each text once, encode with the
// template (token-space truncation), split by prompt and write shards into a staged directory.
#include "polar/data/builder.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string_view>
#include <thread>

#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/data/shards.h"

namespace polar {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kManifestFormat = "polar-dataset-v1";
constexpr uint64_t kSplitSeedSalt = 0x9E3779B97F4A7C15ULL;  // split and grouping use separate streams

// Uniform in [0, n) by rejection; std::uniform_int_distribution differs between standard
// libraries, and the same seed must give the same dataset everywhere.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = max - max % n;
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return x % n;
}

// Removes a file or directory tree; missing is fine.
void remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

template <typename T>
void shuffle(std::vector<T>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[uniform_below(rng, i)]);
}

// The output directory is built at OUTPUT.tmp-<pid> and renamed into place by commit();
// until then, destruction (an error) removes it and OUTPUT is untouched.
class StagedOutput {
 public:
  StagedOutput(const std::string& output, bool overwrite) : output_(output), overwrite_(overwrite) {
    POLAR_CHECK(!output.empty(), "--output: empty path");
    while (output_.size() > 1 && output_.back() == '/') output_.pop_back();
    check_target();
    tmp_ = output_ + ".tmp-" + std::to_string(::getpid());
    remove_tree(tmp_);
    std::error_code ec;
    fs::create_directories(tmp_, ec);
    POLAR_CHECK(!ec, tmp_, ": cannot create directory: ", ec.message());
  }
  ~StagedOutput() {
    if (!committed_) remove_tree(tmp_);
  }
  const std::string& tmp() const { return tmp_; }

  void commit() {
    check_target();
    std::error_code ec;
    const std::string old = output_ + ".old-" + std::to_string(::getpid());
    const bool replacing = fs::exists(output_);
    if (replacing) {
      fs::rename(output_, old, ec);
      POLAR_CHECK(!ec, output_, ": cannot move the previous dataset aside: ", ec.message());
    }
    fs::rename(tmp_, output_, ec);
    if (ec) {
      if (replacing) fs::rename(old, output_, ec);
      throw Error(output_ + ": cannot rename " + tmp_ + " into place");
    }
    committed_ = true;
    if (replacing) remove_tree(old);
  }

 private:
  // Refuses an existing OUTPUT unless --overwrite, and even then only a dataset or empty directory.
  void check_target() const {
    if (!fs::exists(output_)) return;
    POLAR_CHECK(overwrite_, output_, ": already exists (pass --overwrite to replace it)");
    const bool dataset = fs::is_directory(output_) &&
                         (fs::exists(fs::path(output_) / "manifest.json") || fs::is_empty(output_));
    POLAR_CHECK(dataset, output_, ": exists and is not a polar dataset (no manifest.json); refusing to replace it");
  }

  std::string output_, tmp_;
  bool overwrite_;
  bool committed_ = false;
};

// The texts of one group, pointing into the records.
struct GroupTexts {
  const std::string* prompt = nullptr;
  const std::string* reference = nullptr;
  std::vector<const std::string*> candidates;
};

// Encodes groups on a few threads (sentencepiece encoding is const and thread-safe). Each
// (prompt, reference) and (prompt, candidate) run is encoded as one string, as the serving
// engines do (tokenizer/template.h), so the ids match theirs.
std::vector<std::optional<EncodedGroup>> encode_groups(const Tokenizer& tok, TemplateKind kind,
                                                       const std::vector<GroupTexts>& groups,
                                                       const TemplateLimits& limits) {
  std::vector<std::optional<EncodedGroup>> out(groups.size());
  const size_t n_threads = std::max<size_t>(1, std::min<size_t>({std::thread::hardware_concurrency(), 8,
                                                                  groups.size() / 64 + 1}));
  std::vector<std::exception_ptr> errors(n_threads);
  auto work = [&](size_t t) {
    try {
      std::vector<std::string> candidates;
      for (size_t i = t; i < groups.size(); i += n_threads) {
        const GroupTexts& g = groups[i];
        candidates.clear();
        for (const std::string* c : g.candidates) candidates.push_back(*c);
        out[i] = encode_group_text(tok, kind, *g.prompt, *g.reference, candidates, limits);
      }
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < n_threads; ++t) threads.emplace_back(work, t);
  work(0);
  for (auto& th : threads) th.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return out;
}

// Writes groups into train/ and eval/ and keeps the counts the manifest reports.
class SplitWriters {
 public:
  SplitWriters(const std::string& root, TemplateKind kind, int64_t groups_per_shard)
      : train_((fs::path(root) / "train").string(), kind, groups_per_shard),
        eval_((fs::path(root) / "eval").string(), kind, groups_per_shard) {}

  void add(const std::optional<EncodedGroup>& group, int32_t category, bool is_eval) {
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

  // An empty dataset is an error: it means the inputs or the limits are wrong.
  void finish(const std::vector<std::string>& categories, const std::string& why_empty) {
    POLAR_CHECK(train_counts_.groups + eval_counts_.groups > 0, "no groups to write: ", why_empty,
                "; ", dropped_too_long_, " groups too long for --max-length");
    if (dropped_too_long_ > 0) {
      spdlog::warn("data: dropped {} groups that do not fit --max-length even with the prompt cut away",
                   dropped_too_long_);
    }
    train_.finish(categories);
    eval_.finish(categories);
  }

  json counts() const {
    auto split = [](const Counts& c, const ShardWriter& w) {
      return json{{"groups", c.groups},
                  {"sequences", c.sequences},
                  {"pairs", c.pairs},
                  {"sequence_tokens", c.sequence_tokens},
                  {"stored_tokens", w.tokens()}};
    };
    return {{"train", split(train_counts_, train_)}, {"eval", split(eval_counts_, eval_)}};
  }

  json truncation() const {
    return {{"groups_prompt_cut", groups_prompt_cut_},
            {"prompt_tokens_cut", prompt_tokens_cut_},
            {"groups_response_cut", groups_response_cut_},
            {"response_tokens_cut", response_tokens_cut_},
            {"groups_dropped_too_long", dropped_too_long_}};
  }

 private:
  struct Counts {
    int64_t groups = 0, sequences = 0, pairs = 0, sequence_tokens = 0;
  };
  ShardWriter train_, eval_;
  Counts train_counts_, eval_counts_;
  int64_t groups_prompt_cut_ = 0, prompt_tokens_cut_ = 0, groups_response_cut_ = 0, response_tokens_cut_ = 0;
  int64_t dropped_too_long_ = 0;
};

// Why a build produced no groups, for the error: which inputs, and whether every line was
// invalid or every prompt unusable (`prompt_reasons`: skipped prompts by reason).
std::string why_no_groups(const std::vector<std::string>& inputs, const ReadStats& read,
                          const std::map<std::string, int64_t>& prompt_reasons, int64_t planned_groups) {
  std::string files;
  for (const auto& f : inputs) files += (files.empty() ? "" : ", ") + f;
  if (read.accepted == 0) {
    return fmt::format("{}: all {} lines were invalid and skipped ({})", files, read.lines,
                       json(read.skipped_by_reason).dump());
  }
  if (planned_groups == 0) {
    return fmt::format("{}: {} valid records, but no prompt could form a group (prompts skipped by reason: {})",
                       files, read.accepted, json(prompt_reasons).dump());
  }
  return fmt::format("{}: {} valid records, {} planned groups", files, read.accepted, planned_groups);
}

// Sorted category names and the id of each name.
struct CategoryTable {
  std::vector<std::string> names;
  std::map<std::string, int32_t> ids;
  explicit CategoryTable(std::vector<std::string> all) {
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    names = std::move(all);
    for (size_t i = 0; i < names.size(); ++i) ids[names[i]] = static_cast<int32_t>(i);
  }
};

void check_limits(const TemplateLimits& limits, double eval_fraction) {
  POLAR_CHECK(limits.max_length > 2, "--max-length must be > 2, got ", limits.max_length);
  POLAR_CHECK(limits.max_response_length > 0, "--max-response-length must be positive, got ",
              limits.max_response_length);
  POLAR_CHECK(eval_fraction >= 0.0 && eval_fraction <= 1.0, "--eval-fraction must be in [0, 1], got ",
              eval_fraction);
}

json tokenizer_json(const Tokenizer& tok, const std::string& path) {
  const SpecialTokens& s = tok.special();
  return {{"path", path}, {"vocab_size", tok.vocab_size()}, {"bos", s.bos},
          {"eos", s.eos},   {"pad", s.pad},                   {"reward_sep", s.reward_sep},
          {"reward", s.reward}, {"fingerprint", tok.fingerprint()}};
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::vector<bool> split_eval_prompts(int64_t n, double fraction, uint64_t seed) {
  POLAR_CHECK(n >= 0 && fraction >= 0.0 && fraction <= 1.0, "split_eval_prompts: bad arguments");
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  std::mt19937_64 rng(seed ^ kSplitSeedSalt);
  shuffle(order, rng);
  const auto n_eval = static_cast<int64_t>(std::llround(fraction * static_cast<double>(n)));
  std::vector<bool> is_eval(static_cast<size_t>(n), false);
  for (int64_t i = 0; i < n_eval; ++i) is_eval[static_cast<size_t>(order[static_cast<size_t>(i)])] = true;
  return is_eval;
}

GroupPlan plan_pretrain_groups(const std::vector<TrajectoryRecord>& records, int64_t negatives,
                               int64_t groups_per_prompt, uint64_t seed) {
  POLAR_CHECK(negatives >= 1, "--negatives must be >= 1, got ", negatives);
  POLAR_CHECK(groups_per_prompt >= 0, "--groups-per-prompt must be >= 0, got ", groups_per_prompt);
  // prompt -> policy -> record indices (input order); sorted maps fix the iteration order.
  std::map<std::string_view, std::map<std::string_view, std::vector<int64_t>>> by_prompt;
  for (size_t i = 0; i < records.size(); ++i) {
    by_prompt[records[i].prompt][records[i].policy].push_back(static_cast<int64_t>(i));
  }

  GroupPlan plan;
  std::mt19937_64 rng(seed);
  for (const auto& [prompt, policies_map] : by_prompt) {
    const auto prompt_index = static_cast<int64_t>(plan.prompts.size());
    plan.prompts.emplace_back(prompt);
    std::vector<const std::vector<int64_t>*> policies;
    for (const auto& [name, trajectories] : policies_map) policies.push_back(&trajectories);
    if (static_cast<int64_t>(policies.size()) < negatives + 1) {
      ++plan.skipped_prompts_by_reason["fewer_policies_than_negatives_plus_one"];
      continue;
    }

    // Disjoint (reference, positive) pairs of each policy, after shuffling its trajectories.
    std::vector<std::vector<std::pair<int64_t, int64_t>>> pairs(policies.size());
    std::vector<size_t> eligible;
    for (size_t a = 0; a < policies.size(); ++a) {
      std::vector<int64_t> t = *policies[a];
      if (t.size() < 2) continue;
      shuffle(t, rng);
      for (size_t i = 0; i + 1 < t.size(); i += 2) pairs[a].emplace_back(t[i], t[i + 1]);
      eligible.push_back(a);
    }
    if (eligible.empty()) {
      ++plan.skipped_prompts_by_reason["no_policy_with_two_trajectories"];
      continue;
    }

    // (policy, pair index) in use: all of them, or a cap taken round-robin over the policies in
    // random order, so a capped prompt still draws references from as many policies as it can.
    std::vector<std::pair<size_t, size_t>> chosen;
    if (groups_per_prompt == 0) {
      for (size_t a : eligible) {
        for (size_t k = 0; k < pairs[a].size(); ++k) chosen.emplace_back(a, k);
      }
    } else {
      shuffle(eligible, rng);
      for (size_t round = 0; static_cast<int64_t>(chosen.size()) < groups_per_prompt; ++round) {
        bool any = false;
        for (size_t a : eligible) {
          if (round >= pairs[a].size() || static_cast<int64_t>(chosen.size()) >= groups_per_prompt) continue;
          chosen.emplace_back(a, round);
          any = true;
        }
        if (!any) break;
      }
    }

    std::vector<size_t> others;
    for (const auto& [a, k] : chosen) {
      PlannedGroup g;
      g.prompt = prompt_index;
      g.reference = pairs[a][k].first;
      g.candidates.push_back(pairs[a][k].second);
      // K distinct policies other than A (partial Fisher-Yates), one random trajectory each.
      others.clear();
      for (size_t b = 0; b < policies.size(); ++b) {
        if (b != a) others.push_back(b);
      }
      for (int64_t j = 0; j < negatives; ++j) {
        const size_t pick = static_cast<size_t>(j) + uniform_below(rng, others.size() - static_cast<size_t>(j));
        std::swap(others[static_cast<size_t>(j)], others[pick]);
        const auto& t = *policies[others[static_cast<size_t>(j)]];
        g.candidates.push_back(t[uniform_below(rng, t.size())]);
      }
      plan.groups.push_back(std::move(g));
    }
  }
  return plan;
}

json build_pretrain_dataset(const PretrainBuildOptions& o) {
  POLAR_CHECK(!o.trajectories.empty(), "--trajectories: no input files");
  POLAR_CHECK(o.negatives >= 1, "--negatives must be >= 1, got ", o.negatives);
  POLAR_CHECK(o.groups_per_prompt >= 0, "--groups-per-prompt must be >= 0, got ", o.groups_per_prompt);
  check_limits(o.limits, o.eval_fraction);
  StagedOutput staged(o.output, o.overwrite);
  const Tokenizer tok = Tokenizer::load(o.tokenizer);

  ReadStats read_stats;
  std::vector<TrajectoryRecord> records;
  for (const auto& path : o.trajectories) {
    auto part = read_trajectories(path, o.skip_invalid, &read_stats);
    records.insert(records.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  spdlog::info("data: read {} trajectories ({} skipped)", records.size(), read_stats.skipped);

  const GroupPlan plan = plan_pretrain_groups(records, o.negatives, o.groups_per_prompt, o.seed);

  // Usable prompts (with at least one group) are split; the rest were skipped above.
  std::vector<int64_t> usable;  // prompt indices, sorted
  for (const auto& g : plan.groups) {
    if (usable.empty() || usable.back() != g.prompt) usable.push_back(g.prompt);
  }
  const std::vector<bool> usable_eval = split_eval_prompts(static_cast<int64_t>(usable.size()), o.eval_fraction, o.seed);
  std::vector<bool> prompt_eval(plan.prompts.size(), false);
  int64_t eval_prompts = 0;
  for (size_t i = 0; i < usable.size(); ++i) {
    prompt_eval[static_cast<size_t>(usable[i])] = usable_eval[i];
    eval_prompts += usable_eval[i] ? 1 : 0;
  }

  std::vector<std::string> category_names;
  std::vector<GroupTexts> texts;
  texts.reserve(plan.groups.size());
  for (const auto& g : plan.groups) {
    category_names.push_back(records[static_cast<size_t>(g.reference)].category);
    GroupTexts t{&plan.prompts[static_cast<size_t>(g.prompt)], &records[static_cast<size_t>(g.reference)].response, {}};
    for (int64_t r : g.candidates) t.candidates.push_back(&records[static_cast<size_t>(r)].response);
    texts.push_back(std::move(t));
  }
  const auto encoded = encode_groups(tok, o.template_kind, texts, o.limits);
  spdlog::info("data: {} groups from {} prompts", plan.groups.size(), usable.size());

  const CategoryTable categories(std::move(category_names));
  SplitWriters writers(staged.tmp(), o.template_kind, o.groups_per_shard);
  for (size_t i = 0; i < plan.groups.size(); ++i) {
    const auto& g = plan.groups[i];
    writers.add(encoded[i], categories.ids.at(records[static_cast<size_t>(g.reference)].category),
                prompt_eval[static_cast<size_t>(g.prompt)]);
  }
  int64_t skipped_prompts = 0;
  for (const auto& [reason, n] : plan.skipped_prompts_by_reason) skipped_prompts += n;
  writers.finish(categories.names, why_no_groups(o.trajectories, read_stats, plan.skipped_prompts_by_reason,
                                                 static_cast<int64_t>(plan.groups.size())));
  tok.save((fs::path(staged.tmp()) / "tokenizer").string());

  json manifest = {
      {"format", kManifestFormat},
      {"kind", "pretrain"},
      {"records", read_stats.to_json()},
      {"prompts",
       {{"total", plan.prompts.size()},
        {"train", static_cast<int64_t>(usable.size()) - eval_prompts},
        {"eval", eval_prompts},
        {"skipped", skipped_prompts},
        {"skipped_by_reason", plan.skipped_prompts_by_reason}}},
      {"planned_groups", plan.groups.size()},
      {"splits", writers.counts()},
      {"truncation", writers.truncation()},
      {"categories", categories.names},
      {"settings",
       {{"trajectories", o.trajectories},
        {"tokenizer", tokenizer_json(tok, o.tokenizer)},
        {"template", template_kind_name(o.template_kind)},
        {"negatives", o.negatives},
        {"seed", o.seed},
        {"max_length", o.limits.max_length},
        {"max_response_length", o.limits.max_response_length},
        {"eval_fraction", o.eval_fraction},
        {"groups_per_prompt", o.groups_per_prompt},
        {"skip_invalid", o.skip_invalid}}},
  };
  write_json_file_atomic((fs::path(staged.tmp()) / "manifest.json").string(), manifest);
  staged.commit();
  return manifest;
}

json build_preference_dataset(const PreferenceBuildOptions& o) {
  POLAR_CHECK(!o.input.empty(), "--input: no input file");
  check_limits(o.limits, o.eval_fraction);
  StagedOutput staged(o.output, o.overwrite);
  const Tokenizer tok = Tokenizer::load(o.tokenizer);

  ReadStats read_stats;
  const std::vector<PreferenceRecord> records = read_preferences(o.input, o.skip_invalid, &read_stats);
  spdlog::info("data: read {} preference records ({} skipped)", records.size(), read_stats.skipped);

  // Unique prompts, sorted, for the split.
  std::map<std::string_view, int64_t> prompt_index;
  for (const auto& r : records) prompt_index.emplace(r.prompt, 0);
  int64_t next_prompt = 0;
  for (auto& entry : prompt_index) entry.second = next_prompt++;
  const size_t n_prompts = prompt_index.size();
  std::vector<GroupTexts> texts;
  texts.reserve(records.size());
  for (const auto& r : records) texts.push_back(GroupTexts{&r.prompt, &r.reference, {&r.chosen, &r.rejected}});
  const auto encoded = encode_groups(tok, TemplateKind::Finetune, texts, o.limits);
  const std::vector<bool> prompt_eval = split_eval_prompts(static_cast<int64_t>(n_prompts), o.eval_fraction, o.seed);

  std::vector<std::string> category_names;
  for (const auto& r : records) category_names.push_back(r.category);
  const CategoryTable categories(std::move(category_names));
  SplitWriters writers(staged.tmp(), TemplateKind::Finetune, o.groups_per_shard);
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    const size_t p = static_cast<size_t>(prompt_index.at(r.prompt));
    writers.add(encoded[i], categories.ids.at(r.category), prompt_eval[p]);
  }
  writers.finish(categories.names,
                 why_no_groups({o.input}, read_stats, {}, static_cast<int64_t>(records.size())));
  tok.save((fs::path(staged.tmp()) / "tokenizer").string());

  int64_t eval_prompts = 0;
  for (bool e : prompt_eval) eval_prompts += e ? 1 : 0;
  json manifest = {
      {"format", kManifestFormat},
      {"kind", "preference"},
      {"records", read_stats.to_json()},
      {"prompts",
       {{"total", n_prompts},
        {"train", static_cast<int64_t>(n_prompts) - eval_prompts},
        {"eval", eval_prompts},
        {"skipped", 0},
        {"skipped_by_reason", json::object()}}},
      {"planned_groups", records.size()},
      {"splits", writers.counts()},
      {"truncation", writers.truncation()},
      {"categories", categories.names},
      {"settings",
       {{"input", o.input},
        {"tokenizer", tokenizer_json(tok, o.tokenizer)},
        {"template", template_kind_name(TemplateKind::Finetune)},
        {"seed", o.seed},
        {"max_length", o.limits.max_length},
        {"max_response_length", o.limits.max_response_length},
        {"eval_fraction", o.eval_fraction},
        {"skip_invalid", o.skip_invalid}}},
  };
  write_json_file_atomic((fs::path(staged.tmp()) / "manifest.json").string(), manifest);
  staged.commit();
  return manifest;
}

}  // namespace polar
