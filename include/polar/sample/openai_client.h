// A client for OpenAI-compatible completion servers (vLLM, SGLang, lmdeploy):
//   GET  /v1/models            {"data": [{"id": MODEL}, ...]} (checked before
//   sampling) POST /v1/completions       {"model", "prompt", "max_tokens",
//   "temperature", "top_p", "top_k",
//                               "seed", "stop"} -> {"choices": [{"text",
//                               "finish_reason"}], "usage"}
//   POST /v1/chat/completions  the same with "messages": [{"role": "user",
//   "content": prompt}]
//                               -> {"choices": [{"message": {"content"},
//                               "finish_reason"}]}
// Connection errors, timeouts, 429 and 5xx are retried max_retries times with
// doubling backoff; other statuses and malformed bodies fail at once. Errors
// name the policy, endpoint and cause.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "polar/sample/pool.h"

namespace polar::sample {

struct Completion {
  std::string text;
  std::string finish;   // the server's finish_reason ("" when absent)
  int64_t tokens = -1;  // usage.completion_tokens, -1 when absent
  // HTTP 400 saying the prompt and max_tokens exceed the model's context (vLLM, SGLang,
  // lmdeploy wordings): no text; the caller shortens the prompt or skips it.
  bool context_exceeded = false;
  std::string error;  // the start of that 400's body
};

// Whether an HTTP 400 body says the request exceeds the model's context length.
bool is_context_length_error(const std::string& body);

class OpenAIClient {
 public:
  OpenAIClient(std::string policy, ServerSpec spec);
  // Throws when the endpoint cannot be reached (after retries) or does not
  // serve spec.model.
  void check() const;
  Completion complete(const std::string& prompt, const SamplingParams& params, uint64_t seed) const;
  // The request body complete() sends.
  nlohmann::json request_body(const std::string& prompt, const SamplingParams& params,
                              uint64_t seed) const;

 private:
  // Status and body of one request, retried as described above.
  std::pair<int, std::string> send(const std::string& method, const std::string& path,
                                   const std::string& body) const;
  std::string where() const;

  std::string policy_;
  ServerSpec spec_;
  std::string host_;    // scheme://host:port
  std::string prefix_;  // path prefix, without a trailing '/'
};

}  // namespace polar::sample
