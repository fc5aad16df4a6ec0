#include "serve/fuzz_bodies.h"

#include "polar/serve/formatted.h"
#include "serve/serve_test_util.h"

namespace polar::testing {

using nlohmann::json;

std::vector<BodySeed> valid_bodies(const Tokenizer& tok) {
  const std::string a = client_format({"what is 1", "yes", "no"});
  const std::string b = client_format({"name a tree", "oak", "an oak tree"});
  const json ids_a = serve::tokenize_formatted(tok, a), ids_b = serve::tokenize_formatted(tok, b);
  const json messages = {{{"role", "system"}, {"content", "Be brief."}},
                         {{"role", "user"}, {"content", "Name a tree"}}};
  const std::string chat_prompt = "<|im_start|>user\nwhat is 1<|im_end|>\n<|im_start|>assistant\n";
  return {
      {"/pooling", {{"model", "polar"}, {"input", {a, b}}, {"encoding_format", "float"}}},
      {"/pooling", {{"input", a}}},
      {"/pooling", {{"model", "polar"}, {"input", ids_a}}},
      {"/pooling", {{"input", {ids_a, ids_b}}, {"add_special_tokens", true}}},
      {"/classify", {{"model", "polar"}, {"text", {a, b}}}},
      {"/classify", {{"text", b}}},
      {"/classify", {{"input_ids", {ids_b, ids_a}}}},
      {"/classify", {{"model", "polar"}, {"input", {a, b}}, {"use_activation", false}}},
      {"/v1/embeddings", {{"model", "polar"}, {"input", {b, a}}, {"encoding_format", "float"}}},
      {"/v1/embeddings", {{"input", ids_a}, {"dimensions", 1}}},
      {"/score", {{"prompt", "what is 1"}, {"reference", "yes"}, {"outputs", {"no", "yes"}}}},
      {"/score",
       {{{"prompt", messages}, {"reference", "oak"}, {"output", "an oak"}, {"wrapper", "sft"}},
        {{"prompt", "how many"},
         {"reference", "many"},
         {"output", "a few"},
         {"wrapper", "pretrain"}}}},
      {"/get_reward",
       {{"query", {chat_prompt + "yes<|im_end|>", chat_prompt + "no<|im_end|>"}},
        {"prompts", {chat_prompt, chat_prompt}},
        {"labels", {"yes", "yes"}}}},
      {"/get_reward",
       {{"query",
         {"<|start_header_id|>user<|end_header_id|>\n\nname a tree<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nan oak<|eot_id|>"}},
        {"prompts", {"a prompt the query does not start with"}},
        {"labels", {"oak"}}}},
  };
}

serve::ParsedRequest parse_request(const std::string& path, const std::string& text,
                                   const Tokenizer& tok, const serve::RequestLimits& limits) {
  const json body = serve::parse_body(text, limits);
  serve::ParsedRequest req = path == "/pooling"    ? serve::parse_pooling(body, tok, limits)
                             : path == "/classify" ? serve::parse_classify(body, tok, limits)
                             : path == "/score"    ? serve::parse_score(body, tok, limits)
                             : path == "/v1/embeddings"
                                 ? serve::parse_embeddings(body, tok, limits)
                                 : serve::parse_get_reward(body, tok, limits);
  serve::check_request_tokens(req, limits);
  return req;
}

namespace {

// Sequences the body lists, read without the server's parser.
int64_t listed_sequences(const std::string& path, const json& body) {
  auto inputs = [](const json& v) -> int64_t {
    if (v.is_string()) return 1;
    return !v.empty() && v[0].is_number() ? 1 : static_cast<int64_t>(v.size());
  };
  auto record = [](const json& r) -> int64_t {
    return r.contains("outputs") ? static_cast<int64_t>(r["outputs"].size()) : 1;
  };
  if (path == "/pooling" || path == "/v1/embeddings") return inputs(body["input"]);
  if (path == "/classify") {
    const bool vllm =
        body.contains("input") && !body.contains("text") && !body.contains("input_ids");
    if (vllm) return inputs(body["input"]);
    return inputs(body.contains("input_ids") && !body.contains("text") ? body["input_ids"]
                                                                       : body["text"]);
  }
  if (path == "/get_reward") return static_cast<int64_t>(body["query"].size());
  if (body.is_object()) return record(body);
  int64_t n = 0;
  for (const auto& r : body) n += record(r);
  return n;
}

}  // namespace

std::string check_parsed(const std::string& path, const std::string& text,
                         const serve::ParsedRequest& req, const Tokenizer& tok,
                         const serve::RequestLimits& limits) {
  const int64_t listed = listed_sequences(path, json::parse(text));
  if (req.sequences() != listed)
    return "parsed " + std::to_string(req.sequences()) + " sequences of " + std::to_string(listed) +
           " listed";
  if (listed < 1 || (limits.max_sequences > 0 && listed > limits.max_sequences))
    return "accepted " + std::to_string(listed) + " sequences";
  if (req.groups.size() != req.group_sizes.size()) return "groups and group sizes differ";
  size_t k = 0;
  for (size_t g = 0; g < req.groups.size(); ++g) {
    const EncodedGroup& group = req.groups[g];
    if (group.candidates.size() != req.group_sizes[g]) return "a group's size differs";
    for (const auto& c : group.candidates) {
      const int64_t n = static_cast<int64_t>(group.prefix.size() + c.size());
      if (k >= req.sequence_tokens.size() || req.sequence_tokens[k++] != n)
        return "sequence_tokens differ from the groups";
      if (n > limits.max_length) return "a sequence longer than --max-length";
      const int32_t last = c.empty() ? (group.prefix.empty() ? -1 : group.prefix.back()) : c.back();
      if (last != tok.special().reward) return "a sequence that does not end with the reward token";
      for (const auto* ids : {&group.prefix, &c})
        for (int32_t id : *ids)
          if (id < 0 || id >= tok.vocab_size()) return "a token id outside the vocabulary";
    }
  }
  return "";
}

std::string check_refusal(int status, const std::string& message) {
  if (status < 400 || status > 499) return "status " + std::to_string(status);
  if (message.empty()) return "an empty message";
  for (const char* part : {"\"", "body", "JSON", "--max-", "rollout"})
    if (message.find(part) != std::string::npos) return "";
  return "a message naming nothing: " + message;
}

}  // namespace polar::testing
