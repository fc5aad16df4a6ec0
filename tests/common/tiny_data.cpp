#include "common/tiny_data.h"

#include <nlohmann/json.hpp>

#include <unistd.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>

#include "polar/common/json_config.h"
#include "polar/data/shards.h"
#include "polar/tokenizer/template.h"
#include "polar/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace polar::testing {

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "polar-test-XXXXXX").string();
  char* p = ::mkdtemp(tmpl.data());
  if (!p) throw std::runtime_error("mkdtemp failed");
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string tiny_tokenizer_dir() {
  static std::once_flag once;
  static std::string dir;
  std::call_once(once, [] {
    dir = (fs::temp_directory_path() / ("polar-test-tokenizer-" + std::to_string(::getpid())))
              .string();
    fs::create_directories(dir);
    std::string corpus = dir + "/corpus.txt";
    std::ofstream out(corpus);
    std::mt19937_64 rng(7);
    const char* words[] = {"the",   "policy", "reward", "model", "answer", "is",   "of",
                           "a",     "number", "count",  "what",  "how",    "many", "write",
                           "about", "sea",    "sky",    "tree",  "and",    "yes"};
    for (int line = 0; line < 400; ++line) {
      for (int w = 0; w < 12; ++w)
        out << words[rng() % 20] << (w % 5 == 4 ? " " + std::to_string(rng() % 1000) + " " : " ");
      out << "\n";
    }
    out.close();
    TokenizerTrainOptions o;
    o.inputs = {corpus};
    o.vocab_size = 300;
    o.output_dir = dir + "/tok";
    train_tokenizer(o);
    dir += "/tok";
  });
  return dir;
}

std::string tokenizer_variant_name(const std::string& model_type, bool add_dummy_prefix,
                                   const std::string& normalization) {
  return model_type + (add_dummy_prefix ? "-prefix-" : "-noprefix-") + normalization;
}

std::string tokenizer_variant_dir(const std::string& model_type, bool add_dummy_prefix,
                                  const std::string& normalization) {
  static std::mutex mu;
  static std::map<std::string, std::string> made;
  std::lock_guard<std::mutex> lock(mu);
  const std::string name = tokenizer_variant_name(model_type, add_dummy_prefix, normalization);
  if (auto it = made.find(name); it != made.end()) return it->second;
  const fs::path root =
      fs::temp_directory_path() / ("polar-test-tokenizers-" + std::to_string(::getpid()));
  fs::create_directories(root);
  const std::string corpus = (root / "corpus.txt").string();
  if (!fs::exists(corpus)) {
    std::ofstream out(corpus);
    std::mt19937_64 rng(11);
    const char* words[] = {"the",   "capital", "of",   "China", "is",  "Beijing", "answer", "count",
                           "write", "sea",     "sky",  "tree",  "and", "yes",     "北京",   "是",
                           "中国",  "首都",    "café", "naïve", "😀",   "🚀",       "Å",      "tab\t",
                           "a,b",   "(x)",     "=",    "you",   "are", "policy"};
    for (int line = 0; line < 1500; ++line) {
      if (line % 7 == 0) out << "  ";
      for (int w = 0; w < 10; ++w) {
        out << words[rng() % 30] << (w % 4 == 3 ? " " + std::to_string(rng() % 100000) + " " : " ");
      }
      out << "\n";
    }
  }
  TokenizerTrainOptions o;
  o.inputs = {corpus};
  o.vocab_size = 400;
  o.model_type = model_type;
  o.add_dummy_prefix = add_dummy_prefix;
  o.normalization = normalization;
  o.output_dir = (root / name).string();
  train_tokenizer(o);
  made[name] = o.output_dir;
  return o.output_dir;
}

void write_copy_task_dataset(const std::string& dir, int64_t train_groups, int64_t eval_groups,
                             int64_t negatives, uint64_t seed) {
  Tokenizer tok = Tokenizer::load(tiny_tokenizer_dir());
  fs::create_directories(dir);
  tok.save(dir + "/tokenizer");
  std::mt19937_64 rng(seed + 11);
  // References and positives use ids [20, 120), negatives [120, 220): easy to learn quickly.
  auto random_tokens = [&](int n, int32_t base = 20) {
    std::vector<int32_t> v;
    for (int i = 0; i < n; ++i) v.push_back(static_cast<int32_t>(base + rng() % 100));
    return v;
  };
  TemplateLimits limits;
  limits.max_length = 256;
  for (auto [split, n] :
       {std::pair<std::string, int64_t>{"train", train_groups}, {"eval", eval_groups}}) {
    ShardWriter writer(dir + "/" + split, TemplateKind::Finetune, 64);
    for (int64_t g = 0; g < n; ++g) {
      auto prompt = random_tokens(3 + static_cast<int>(rng() % 4));
      auto reference = random_tokens(4 + static_cast<int>(rng() % 5));
      std::vector<std::vector<int32_t>> cands{reference};
      for (int64_t k = 0; k < negatives; ++k)
        cands.push_back(random_tokens(static_cast<int>(reference.size()), 120));
      auto enc = encode_group(tok, TemplateKind::Finetune, prompt, reference, cands, limits);
      writer.add(*enc, static_cast<int32_t>(g % 2));
    }
    writer.finish({"even", "odd"});
  }
  write_json_file_atomic(dir + "/manifest.json", nlohmann::json{{"kind", "copy-task"}});
}

std::string tiny_train_config(const std::string& data_dir, const std::string& run_dir,
                              int64_t steps) {
  nlohmann::json j{
      {"stage", "pretrain"},
      {"model",
       {{"hidden_size", 32},
        {"num_layers", 2},
        {"num_heads", 4},
        {"num_kv_heads", 2},
        {"intermediate_size", 64},
        {"max_position", 512}}},
      {"data", {{"train", data_dir}, {"row_tokens", 128}, {"micro_batch_tokens", 512}}},
      {"train",
       {{"steps", steps},
        {"batch_groups", 8},
        {"lr", 1e-2},
        {"warmup_steps", 2},
        {"seed", 3},
        {"device", "cpu"},
        {"threads", 1}}},
      {"eval", {{"every", 0}, {"max_groups", 0}}},
      {"run",
       {{"output_dir", run_dir}, {"checkpoint_every", 4}, {"keep_last", 2}, {"log_every", 5}}},
  };
  return j.dump(2);
}

}  // namespace polar::testing
