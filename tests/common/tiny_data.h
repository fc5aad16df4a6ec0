// Test fixtures: a tiny tokenizer and a tiny POLAR dataset with a learnable signal (the
// positive copies the reference, negatives are drawn from other token ids), written with the real
// data pipeline.
#pragma once

#include <cstdint>
#include <string>

namespace polar::testing {

// A fresh empty directory under /tmp, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Trains (once per process, cached) a ~300-piece tokenizer; returns its directory.
std::string tiny_tokenizer_dir();

// Trains (once per process per variant, cached) a ~400-piece tokenizer on text with spaces,
// newlines, digits, non-ASCII and emoji; model_type bpe|unigram, normalization identity|nmt_nfkc.
std::string tokenizer_variant_dir(const std::string& model_type, bool add_dummy_prefix,
                                  const std::string& normalization = "identity");
std::string tokenizer_variant_name(const std::string& model_type, bool add_dummy_prefix,
                                   const std::string& normalization = "identity");

// Writes DIR/{manifest.json, tokenizer/, train/, eval/} with `train_groups` and `eval_groups`
// copy-task groups of `negatives` negatives each.
void write_copy_task_dataset(const std::string& dir, int64_t train_groups, int64_t eval_groups,
                             int64_t negatives = 1, uint64_t seed = 0);

// A train config (JSON text) for a 2-layer hidden-32 model on `data_dir` writing to `run_dir`.
std::string tiny_train_config(const std::string& data_dir, const std::string& run_dir,
                              int64_t steps);

}  // namespace polar::testing
