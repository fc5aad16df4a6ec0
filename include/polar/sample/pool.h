// The policy pool of `polar sample`: a JSON file
//   {"sampling": {defaults}, "policies": [entry, ...]}
// where an entry is a server policy
//   {"name", "endpoint": "http://host:port", "model", "chat": false,
//   "concurrency": 8,
//    "timeout_s": 120, "max_retries": 3, "sampling": {...}}
// or a built-in policy (a Hugging Face causal LM run in-process)
//   {"name", "model_dir": DIR, "tokenizer": DIR, "device": "cpu", "dtype":
//   "fp32",
//    "batch_size": 8, "sampling": {...}}
// "sampling" holds temperature, top_p, top_k, max_new_tokens, stop; an entry's
// values override the pool's, which override the defaults (1.0, 0.9, 50, 256,
// none). Relative paths are relative to the pool file. Unknown keys, duplicate
// names and missing fields are errors naming the entry.
#pragma once

#include <string>
#include <vector>

#include "polar/sample/generate.h"

namespace polar::sample {

struct ServerSpec {
  std::string endpoint;  // scheme://host:port[/prefix]; requests go to prefix/v1/...
  std::string model;
  bool chat = false;  // /v1/chat/completions with the prompt as one user message
  int64_t concurrency = 8;
  double timeout_s = 120;
  int64_t max_retries = 3;
  double retry_backoff_s = 0.5;  // doubled after every failed try
};

struct BuiltinSpec {
  std::string model_dir;
  std::string tokenizer;  // instead of model_dir's tokenizer.model
  std::string device = "cpu";
  std::string dtype = "fp32";
  int64_t batch_size = 8;
};

struct PolicySpec {
  std::string name;
  bool is_server = false;
  ServerSpec server;
  BuiltinSpec builtin;
  SamplingParams sampling;
};

std::vector<PolicySpec> read_pool(const std::string& path);
// The same from an already parsed object; `base_dir` resolves relative paths.
std::vector<PolicySpec> parse_pool(const nlohmann::json& pool, const std::string& where,
                                   const std::string& base_dir);

}  // namespace polar::sample
