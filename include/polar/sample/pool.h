// The policy pool of `polar sample`: a JSON file
//   {"sampling": {defaults}, "policies": [entry, ...]}
// where an entry is a server policy
//   {"name", "kind": "base" | "chat", "endpoint": "http://host:port", "model",
//    "engine": "vllm" | "sglang" | "lmdeploy" | "openai", "chat": false,
//   "concurrency": 8,
//    "timeout_s": 120, "max_retries": 3, "sampling": {...}}
// or a built-in policy (a Hugging Face causal LM run in-process)
//   {"name", "kind", "model_dir": DIR, "tokenizer": DIR, "chat_template": "...{prompt}...",
//    "device": "cpu", "dtype": "fp32",
//    "batch_size": 8, "sampling": {...}}
// "sampling" holds temperature, top_p, top_k, max_new_tokens, stop; an entry's
// values override the pool's, which override the defaults (1.0, 0.9, 50, 4096,
// none). "kind" defaults to "chat" for a server policy with "chat": true, else "base"; a server
// policy of kind "chat" uses the chat endpoint unless "chat" says otherwise. Relative paths are
// relative to the pool file. Unknown keys, duplicate names and missing fields are errors naming the
// entry.
#pragma once

#include <string>
#include <vector>

#include "polar/sample/generate.h"

namespace polar::sample {

// How a server reads sampling parameters: vLLM and SGLang take top_k -1 as off, lmdeploy
// rejects -1 (top_k is left out when off), a plain OpenAI API knows no top_k, min_p or
// repetition_penalty (they are left out).
enum class Engine { Vllm, Sglang, Lmdeploy, OpenAI };
Engine parse_engine(const std::string& name, const std::string& where);
const char* engine_name(Engine engine);

struct ServerSpec {
  std::string endpoint;  // scheme://host:port[/prefix]; requests go to prefix/v1/...
  std::string model;
  Engine engine = Engine::Vllm;
  bool chat = false;  // /v1/chat/completions with the prompt as one user message
  int64_t concurrency = 8;
  double timeout_s = 120;
  int64_t max_retries = 3;
  double retry_backoff_s = 0.5;  // doubled after every failed try
};

struct BuiltinSpec {
  std::string model_dir;
  std::string tokenizer;  // instead of model_dir's tokenizer.model
  // A chat policy's prompt: the text with "{prompt}" replaced, special pieces in it encoded as
  // their ids (e.g. "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n").
  std::string chat_template;
  std::string device = "cpu";
  std::string dtype = "fp32";
  int64_t batch_size = 8;
};

// base: a pre-trained LM, given corpus prefixes; chat: an instruction-tuned one, given
// instruction prompts (by `--scheme paper`).
enum class PolicyKind { Base, Chat };

struct PolicySpec {
  std::string name;
  PolicyKind kind = PolicyKind::Base;
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
