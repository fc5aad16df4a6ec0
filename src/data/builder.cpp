// The preference builder (one group per record) and the helpers it shares with the pre-training
// builder (pretrain_builder.cpp): tokenise each text once, encode with the template (token-space
// truncation), split by prompt and write shards into a staged directory.
#include "polar/data/builder.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string_view>

#include "build_common.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/data/shards.h"

namespace polar {

namespace fs = std::filesystem;
using nlohmann::json;

using namespace data_build;

namespace {

constexpr uint64_t kSplitSeedSalt =
    0x9E3779B97F4A7C15ULL;  // split and grouping use separate streams

}  // namespace

std::string data_build::why_no_groups(const std::vector<std::string>& inputs, const ReadStats& read,
                                      const std::map<std::string, int64_t>& prompt_reasons,
                                      int64_t planned_groups) {
  std::string files;
  for (const auto& f : inputs) files += (files.empty() ? "" : ", ") + f;
  if (read.accepted == 0) {
    return fmt::format("{}: all {} lines were invalid and skipped ({})", files, read.lines,
                       json(read.skipped_by_reason).dump());
  }
  if (planned_groups == 0) {
    return fmt::format(
        "{}: {} valid records, but no prompt could form a group (prompts skipped by reason: {})",
        files, read.accepted, json(prompt_reasons).dump());
  }
  return fmt::format("{}: {} valid records, {} planned groups", files, read.accepted,
                     planned_groups);
}

json data_build::tokenizer_json(const Tokenizer& tok, const std::string& path) {
  const SpecialTokens& s = tok.special();
  // The fingerprint lets every reader check that DATASET/tokenizer is still the one the ids were
  // made with (a replaced tokenizer/ of the same size would otherwise go unnoticed).
  return {{"path", path},
          {"fingerprint", tok.fingerprint()},
          {"vocab_size", tok.vocab_size()},
          {"bos", s.bos},
          {"eos", s.eos},
          {"pad", s.pad},
          {"reward_sep", s.reward_sep},
          {"reward", s.reward}};
}

// ---------------------------------------------------------------------------------------------

std::vector<bool> split_eval_prompts(int64_t n, double fraction, uint64_t seed) {
  POLAR_CHECK(n >= 0 && fraction >= 0.0 && fraction <= 1.0, "split_eval_prompts: bad arguments");
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  std::mt19937_64 rng(seed ^ kSplitSeedSalt);
  shuffle(order, rng);
  const auto n_eval = static_cast<int64_t>(std::llround(fraction * static_cast<double>(n)));
  std::vector<bool> is_eval(static_cast<size_t>(n), false);
  for (int64_t i = 0; i < n_eval; ++i)
    is_eval[static_cast<size_t>(order[static_cast<size_t>(i)])] = true;
  return is_eval;
}

json build_preference_dataset(const PreferenceBuildOptions& o) {
  POLAR_CHECK(!o.input.empty(), "--input: no input file");
  check_limits(o.limits, o.eval_fraction);
  StagedOutput staged(o.output, o.overwrite);
  const Tokenizer tok = Tokenizer::load(o.tokenizer);

  ReadStats read_stats;
  const std::vector<PreferenceRecord> records =
      read_preferences(o.input, o.skip_invalid, &read_stats);
  spdlog::info("data: read {} preference records ({} skipped)", records.size(), read_stats.skipped);

  // Unique prompts, sorted, for the split.
  std::map<std::string_view, int64_t> prompt_index;
  for (const auto& r : records) prompt_index.emplace(r.prompt, 0);
  int64_t next = 0;
  for (auto& [prompt, index] : prompt_index) index = next++;
  const size_t n_prompts = prompt_index.size();
  // Each (prompt, reference) and (prompt, candidate) run is encoded as one string, as POLAR's
  // client and the serving engines do (tokenizer/template.h).
  std::vector<std::optional<EncodedGroup>> encoded(records.size());
  parallel_for(records.size(), 0, [&](size_t i) {
    const auto& r = records[i];
    encoded[i] = encode_group_text(tok, TemplateKind::Finetune, r.prompt, r.reference,
                                   {r.chosen, r.rejected}, o.limits);
  });
  const std::vector<bool> prompt_eval =
      split_eval_prompts(static_cast<int64_t>(n_prompts), o.eval_fraction, o.seed);

  std::vector<std::string> category_names;
  for (const auto& r : records) category_names.push_back(r.category);
  const CategoryTable categories(std::move(category_names));
  SplitWriters writers(staged.tmp(), TemplateKind::Finetune, o.groups_per_shard);
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    const size_t p = static_cast<size_t>(prompt_index.at(r.prompt));
    writers.add(encoded[i], categories.ids.at(r.category), prompt_eval[p]);
    encoded[i].reset();
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
