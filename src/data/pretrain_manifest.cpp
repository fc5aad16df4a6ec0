// The pre-training manifest (one writer for whole builds, worker parts and merges) and the merge
// of worker parts: shards are hard-linked (copied across file systems) into a staged directory,
// counts are summed, and the parts are removed only after the merged dataset is in place.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/data/shards.h"
#include "pretrain_build.h"

namespace polar {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace data_build;

namespace {

constexpr const char* kPartKind = "pretrain-part";

// Adds every integer of `part` into `total`, recursively (counts and counts by reason).
void add_counts(json& total, const json& part) {
  if (!total.is_object()) total = json::object();
  for (const auto& [key, value] : part.items()) {
    if (value.is_object()) {
      add_counts(total[key], value);
    } else if (value.is_number_integer()) {
      total[key] = (total.contains(key) ? total[key].get<int64_t>() : 0) + value.get<int64_t>();
    }
  }
}

json without(json j, std::initializer_list<const char*> keys) {
  for (const char* k : keys) j.erase(k);
  return j;
}

// Reads and checks part I of W: it must come from the same command as part 0.
json read_part(const std::string& output, int index, int num_workers, const json* first) {
  const std::string dir = pretrain_part_dir(output, index, num_workers);
  const std::string path = (fs::path(dir) / "manifest.json").string();
  POLAR_CHECK(fs::exists(path), dir, ": missing (run `polar data pretrain ... --num-workers ",
              num_workers, " --worker-index ", index, "` first)");
  json m = read_json_file(path);
  POLAR_CHECK(m.value("kind", "") == kPartKind && m.contains("settings") && m.contains("build"),
              path, ": not a worker part of a pre-training build");
  POLAR_CHECK(m["settings"].value("worker_index", -1) == index &&
                  m["build"].value("num_workers", 0) == num_workers,
              path, ": is not part ", index, " of ", num_workers);
  if (first) {
    POLAR_CHECK(
        without(m["settings"], {"worker_index"}) == without((*first)["settings"], {"worker_index"}),
        path,
        ": built with other settings than part 0 (inputs, tokenizer, seed and limits must match)");
    POLAR_CHECK(
        m["categories"] == (*first)["categories"] &&
            without(m["records"], {"duplicates"}) == without((*first)["records"], {"duplicates"}),
        path, ": read other records than part 0 (did the inputs change between the workers?)");
  }
  return m;
}

// Links the shards of every part's split into DIR/split/ in part order; writes split.json.
void merge_split(const std::string& output, int num_workers, const std::string& dir,
                 const std::string& split, const std::vector<std::string>& categories) {
  const fs::path target = fs::path(dir) / split;
  fs::create_directories(target);
  std::vector<std::string> shards;
  int64_t groups = 0, tokens = 0;
  std::string kind;
  for (int i = 0; i < num_workers; ++i) {
    const fs::path part = fs::path(pretrain_part_dir(output, i, num_workers)) / split;
    const json index = read_json_file((part / "split.json").string());
    groups += index.at("groups").get<int64_t>();
    tokens += index.at("tokens").get<int64_t>();
    kind = index.at("template").get<std::string>();
    for (const auto& name : index.at("shards")) {
      char merged[32];
      std::snprintf(merged, sizeof(merged), "shard-%05zu.bin", shards.size());
      const fs::path from = part / name.get<std::string>(), to = target / merged;
      if (::link(from.c_str(), to.c_str()) != 0) fs::copy_file(from, to);
      shards.emplace_back(merged);
    }
  }
  write_split_index(target.string(), parse_template_kind(kind), groups, tokens, categories, shards);
  GroupDataset::open(target.string());  // validates every merged shard
}

}  // namespace

std::string pretrain_part_dir(const std::string& output, int worker_index, int num_workers) {
  std::string base = output;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  return base + ".part-" + std::to_string(worker_index) + "-of-" + std::to_string(num_workers);
}

namespace data_build {

json pretrain_settings(const PretrainBuildOptions& o, const std::vector<std::string>& files,
                       const Tokenizer& tok) {
  return {{"trajectories", files},
          {"tokenizer", tokenizer_json(tok, o.tokenizer)},
          {"template", template_kind_name(o.template_kind)},
          {"pairing", pairing_scheme_name(o.pairing)},
          {"negatives", o.negatives},
          {"negatives_from", negative_selection_name(o.negatives_from)},
          {"policies", o.policies},
          {"seed", o.seed},
          {"max_length", o.limits.max_length},
          {"max_response_length", o.limits.max_response_length},
          {"eval_fraction", o.eval_fraction},
          {"groups_per_prompt", o.groups_per_prompt},
          {"passes", o.passes},
          {"skip_invalid", o.skip_invalid},
          {"response_filter",
           {{"enabled", o.response_filter.enabled},
            {"drop_unfinished", o.response_filter.drop_unfinished}}}};
}

json pretrain_manifest(const std::string& kind, const json& counts,
                       const std::vector<std::string>& categories, const json& settings,
                       const json& build) {
  json manifest = {{"format", kManifestFormat}, {"kind", kind}};
  for (const auto& [key, value] : counts.items()) manifest[key] = value;
  manifest["categories"] = categories;
  manifest["settings"] = settings;
  manifest["build"] = build;
  return manifest;
}

}  // namespace data_build

json merge_pretrain_parts(const std::string& output, int num_workers, bool overwrite) {
  POLAR_CHECK(num_workers >= 1, "--num-workers must be >= 1, got ", num_workers);
  std::vector<json> parts;
  for (int i = 0; i < num_workers; ++i)
    parts.push_back(read_part(output, i, num_workers, i ? &parts[0] : nullptr));
  StagedOutput staged(output, overwrite);
  json counts;
  int64_t partitions = 0, largest_partition = 0;
  for (const json& m : parts) {
    add_counts(counts,
               without(m, {"format", "kind", "categories", "settings", "build", "records"}));
    partitions += m["build"].value("partitions", int64_t{0});
    largest_partition =
        std::max(largest_partition, m["build"].value("largest_partition_bytes", int64_t{0}));
  }
  counts["records"] = parts[0]["records"];  // every worker reads every record
  int64_t duplicates = 0;
  for (const json& m : parts) duplicates += m["records"].value("duplicates", int64_t{0});
  counts["records"]["duplicates"] = duplicates;
  const int64_t groups = counts["splits"]["train"]["groups"].get<int64_t>() +
                         counts["splits"]["eval"]["groups"].get<int64_t>();
  POLAR_CHECK(
      groups > 0, "no groups to write: the ", num_workers,
      " parts hold no group; skipped prompts: ", counts["prompts"]["skipped_by_reason"].dump());

  const auto categories = parts[0]["categories"].get<std::vector<std::string>>();
  for (const char* split : {"train", "eval"})
    merge_split(output, num_workers, staged.tmp(), split, categories);
  fs::copy(fs::path(pretrain_part_dir(output, 0, num_workers)) / "tokenizer",
           fs::path(staged.tmp()) / "tokenizer", fs::copy_options::recursive);
  const json build = {{"num_workers", num_workers},
                      {"partitions", partitions},
                      {"memory_budget", parts[0]["build"]["memory_budget"]},
                      {"largest_partition_bytes", largest_partition}};
  const json manifest = pretrain_manifest("pretrain", counts, categories,
                                          without(parts[0]["settings"], {"worker_index"}), build);
  write_json_file_atomic((fs::path(staged.tmp()) / "manifest.json").string(), manifest);
  staged.commit();
  for (int i = 0; i < num_workers; ++i) remove_tree(pretrain_part_dir(output, i, num_workers));
  spdlog::info("data: merged {} parts into {}", num_workers, output);
  return manifest;
}

}  // namespace polar
