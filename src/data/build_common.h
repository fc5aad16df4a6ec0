// Pieces shared by the dataset builders (builder.cpp, pretrain_builder.cpp, pretrain_merge.cpp):
// the staged output directory, threaded tokenisation, the split writers and their counts.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "polar/common/staged_dir.h"
#include "polar/data/records.h"
#include "polar/data/shards.h"
#include "polar/tokenizer/template.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar::data_build {

// The "format" of every dataset manifest.json the builders write.
inline constexpr const char* kManifestFormat = "polar-dataset-v1";

// Uniform in [0, n) by rejection; std::uniform_int_distribution differs between standard
// libraries, and the same seed must give the same dataset everywhere.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n);

template <typename T>
void shuffle(std::vector<T>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[uniform_below(rng, i)]);
}

// Removes a file or directory tree; missing is fine.
void remove_tree(const std::string& path);

// The output directory is built at OUTPUT.tmp-<pid> and renamed into place by commit()
// (polar::StagedDir); until then, destruction (an error) removes it and OUTPUT is untouched. An
// existing OUTPUT is replaced only with `overwrite` and only when it is a dataset or empty. Staging
// directories of OUTPUT left by killed builders (their pid no longer runs) are removed on
// construction.
class StagedOutput {
 public:
  StagedOutput(const std::string& output, bool overwrite);
  const std::string& tmp() const { return staged_.path(); }
  const std::string& output() const { return staged_.output(); }
  void commit();

 private:
  bool overwrite_;
  StagedDir staged_;
};

int resolve_threads(int threads);  // 0 -> hardware concurrency (at least 1)
// fn(i) for i in [0, n) on up to `threads` threads, strided; rethrows the first exception by
// thread.
void parallel_for(size_t n, int threads, const std::function<void(size_t)>& fn);

// Writes groups into train/ and eval/ and keeps the counts the manifest reports.
class SplitWriters {
 public:
  SplitWriters(const std::string& root, TemplateKind kind, int64_t groups_per_shard,
               int64_t shard_bytes = kDefaultShardBytes);
  void add(const std::optional<EncodedGroup>& group, int32_t category, bool is_eval);
  int64_t groups() const;
  // An empty dataset is an error (it means the inputs or the limits are wrong) unless allow_empty.
  void finish(const std::vector<std::string>& categories, const std::string& why_empty,
              bool allow_empty = false);
  nlohmann::json counts() const;      // {"train": {...}, "eval": {...}}
  nlohmann::json truncation() const;  // groups and tokens cut, groups dropped as too long

 private:
  struct Counts {
    int64_t groups = 0, sequences = 0, pairs = 0, sequence_tokens = 0;
  };
  ShardWriter train_, eval_;
  Counts train_counts_, eval_counts_;
  int64_t groups_prompt_cut_ = 0, prompt_tokens_cut_ = 0, groups_response_cut_ = 0,
          response_tokens_cut_ = 0;
  int64_t dropped_too_long_ = 0;
};

// Sorted category names and the id of each name.
struct CategoryTable {
  std::vector<std::string> names;
  std::map<std::string, int32_t> ids;
  explicit CategoryTable(std::vector<std::string> all);
};

void check_limits(const TemplateLimits& limits, double eval_fraction);

// Why a build produced no groups, for the error: which inputs, and whether every line was
// invalid or every prompt unusable (`prompt_reasons`: skipped prompts by reason). In builder.cpp.
std::string why_no_groups(const std::vector<std::string>& inputs, const ReadStats& read,
                          const std::map<std::string, int64_t>& prompt_reasons,
                          int64_t planned_groups);

// The tokenizer section of a manifest's settings (defined in builder.cpp).
nlohmann::json tokenizer_json(const Tokenizer& tok, const std::string& path);

}  // namespace polar::data_build
