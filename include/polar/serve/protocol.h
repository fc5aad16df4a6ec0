// The wire formats `polar serve` speaks. Requests are untrusted: every parser names the key and
// what was expected, and throws HttpError (a 4xx) instead of crashing.
//   POST /pooling   vLLM / lmdeploy: {"model"?, "input": str | [str] | [id] | [[id]]}
//   POST /classify  SGLang:          {"model"?, "text": str | [str]} or {"input_ids": [id] |
//   [[id]]}
//                   vLLM:            {"model"?, "input": str | [str] | [id] | [[id]],
//                                     "use_activation"?: false} (verl's reward loop, vllm engine)
//   POST /v1/embeddings  OpenAI/SGLang: {"model"?, "input": str | [str] | [id] | [[id]]} (verl's
//                                     reward loop, sglang engine)
//   POST /score     polar:           {"prompt", "reference", "output" | "outputs": [...],
//                                     "wrapper"?} or a list of such objects
// Formatted strings must end with the reward token; /score builds the template itself.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "polar/tokenizer/template.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar::serve {

enum class PoolingApi { Vllm, Lmdeploy };               // the /pooling response style
PoolingApi parse_pooling_api(const std::string& name);  // "vllm" | "lmdeploy"

class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct RequestLimits {
  // Sequences per request (--max-sequences); 0: no cap, a large request is split into batches.
  int64_t max_sequences = 0;
  // Tokens one request may hold once tokenised (--max-request-tokens): the memory bound.
  int64_t max_request_tokens = int64_t{64} << 20;
  int64_t max_length = 16384;          // tokens per sequence (--max-length)
  int64_t max_response_length = 4096;  // /score: reference and outputs are cut to this
  int max_json_depth = 32;             // nesting of the request body
};

// What a request asks to score: the groups for reward_groups() and how to map rewards back.
struct ParsedRequest {
  std::vector<EncodedGroup> groups;
  std::vector<int64_t> sequence_tokens;  // per sequence, in reward order
  std::vector<size_t> group_sizes;       // sequences per group (kept when groups are moved out)
  bool single = false;                   // a bare string / one object was sent, not a list
  bool vllm_classify = false;            // /classify in vLLM's shape ("input"), not SGLang's
  int64_t sequences() const { return static_cast<int64_t>(sequence_tokens.size()); }
  int64_t tokens() const;
};

// The body as JSON; a 400 naming the parse error (or the depth limit) otherwise.
nlohmann::json parse_body(const std::string& body, const RequestLimits& limits);

ParsedRequest parse_pooling(const nlohmann::json& body, const Tokenizer& tok,
                            const RequestLimits& limits);
ParsedRequest parse_classify(const nlohmann::json& body, const Tokenizer& tok,
                             const RequestLimits& limits);
ParsedRequest parse_score(const nlohmann::json& body, const Tokenizer& tok,
                          const RequestLimits& limits);
ParsedRequest parse_embeddings(const nlohmann::json& body, const Tokenizer& tok,
                               const RequestLimits& limits);

struct ResponseInfo {
  std::string model;
  std::string id;       // request id, e.g. "pool-17"
  int64_t created = 0;  // unix seconds
  double latency_s = 0;
};

nlohmann::json pooling_response(PoolingApi api, const ParsedRequest& req,
                                const std::vector<float>& rewards, const ResponseInfo& info);
nlohmann::json classify_response(const ParsedRequest& req, const std::vector<float>& rewards,
                                 const ResponseInfo& info);
nlohmann::json score_response(const ParsedRequest& req, const std::vector<float>& rewards,
                              const ResponseInfo& info);
nlohmann::json embeddings_response(const ParsedRequest& req, const std::vector<float>& rewards,
                                   const ResponseInfo& info);
// Throws a 413 naming --max-request-tokens when the request holds more tokens than it.
void check_request_tokens(const ParsedRequest& req, const RequestLimits& limits);

// OpenRLHF's remote reward request (its `serve_rm` HTTP mode): {"query": [str], "prompts":
// [str], "labels": [str]}, every query a prompt followed by a response, chat-templated with
// special tokens kept. The chat template is removed (as POLAR's verl recipe does), the response
// is the query after its prompt, and each label is the reference; the groups are /score's.
ParsedRequest parse_get_reward(const nlohmann::json& body, const Tokenizer& tok,
                               const RequestLimits& limits);
// {"rewards": [...], "scores": [...], "extra_logs": {}}, as OpenRLHF's reward server answers.
nlohmann::json get_reward_response(const std::vector<float>& rewards);
// The text of a chat-templated prompt or query without the template: the role headers and
// turn markers of ChatML (Qwen, InternLM2), Llama 3 and Llama 2 chat templates and bos/eos
// strings are removed, and the contents of several turns are joined with "\n".
std::string strip_chat_template(const std::string& text);

// vLLM's error body {"error": {"message", "type", "param", "code"}}, with the older flat
// {"object": "error", "message", "type", "code"} fields beside it.
nlohmann::json error_body(int status, const std::string& message);

// JSON text; bytes that are not UTF-8 (from echoed input) are replaced rather than thrown on.
std::string json_text(const nlohmann::json& value);

}  // namespace polar::serve
