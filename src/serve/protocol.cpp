// Request parsing and response shapes for the vLLM, lmdeploy, SGLang and native endpoints.
#include "polar/serve/protocol.h"

#include <cstring>

#include "polar/common/error.h"
#include "polar/data/records.h"
#include "polar/serve/formatted.h"

namespace polar::serve {

using nlohmann::json;

namespace {

HttpError bad_request(const std::string& message) { return HttpError(400, message); }

void check_model_field(const json& body) {
  auto it = body.find("model");
  if (it != body.end() && !it->is_null() && !it->is_string()) {
    throw bad_request(std::string("\"model\": expected a string, got ") + it->type_name());
  }
}

void check_count(int64_t n, const std::string& key, const RequestLimits& limits) {
  if (n == 0) throw bad_request(key + ": expected at least one sequence, got an empty list");
  if (limits.max_sequences > 0 && n > limits.max_sequences) {
    throw bad_request(key + ": " + std::to_string(n) + " sequences exceed the limit of " +
                      std::to_string(limits.max_sequences) +
                      " sequences per request (--max-sequences)");
  }
}

void check_length(int64_t tokens, const std::string& where, const RequestLimits& limits) {
  if (tokens > limits.max_length) {
    throw bad_request(where + ": " + std::to_string(tokens) + " tokens exceed the limit of " +
                      std::to_string(limits.max_length) + " tokens per sequence (--max-length)");
  }
}

void add_sequence(ParsedRequest& out, std::vector<int32_t> ids, const std::string& where,
                  const Tokenizer& tok, const RequestLimits& limits) {
  check_length(static_cast<int64_t>(ids.size()), where, limits);
  if (ids.size() < 2 || ids.back() != tok.special().reward) {
    throw bad_request(where + ": the sequence does not end with the reward token (id " +
                      std::to_string(tok.special().reward) + ")");
  }
  out.sequence_tokens.push_back(static_cast<int64_t>(ids.size()));
  out.group_sizes.push_back(1);
  out.groups.push_back(sequence_as_group(ids));
}

void add_text(ParsedRequest& out, const json& item, const std::string& where, const Tokenizer& tok,
              const RequestLimits& limits) {
  if (!item.is_string())
    throw bad_request(where + ": expected a string, got " + std::string(item.type_name()));
  const auto& text = item.get_ref<const std::string&>();
  // A cheap bound before tokenising: a piece covers at least one byte, plus BOS.
  if (static_cast<int64_t>(text.size()) > limits.max_length * 64) {
    throw bad_request(where + ": a string of " + std::to_string(text.size()) +
                      " bytes cannot fit the limit of " + std::to_string(limits.max_length) +
                      " tokens per sequence (--max-length)");
  }
  if (!ends_with_reward_token(tok, text)) {
    throw bad_request(where + ": the formatted string does not end with the reward token \"" +
                      tok.id_to_piece(tok.special().reward) + "\" (or \"" +
                      std::string(kClientRewardToken) + "\")");
  }
  add_sequence(out, tokenize_formatted(tok, text), where, tok, limits);
}

std::vector<int32_t> token_ids(const json& item, const std::string& where, const Tokenizer& tok,
                               const RequestLimits& limits) {
  if (!item.is_array())
    throw bad_request(where + ": expected a list of token ids, got " +
                      std::string(item.type_name()));
  check_length(static_cast<int64_t>(item.size()), where, limits);
  std::vector<int32_t> ids;
  ids.reserve(item.size());
  for (size_t i = 0; i < item.size(); ++i) {
    const json& v = item[i];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= tok.vocab_size()) {
      throw bad_request(where + "[" + std::to_string(i) + "]: expected a token id in [0, " +
                        std::to_string(tok.vocab_size()) + "), got " +
                        v.dump(-1, ' ', false, json::error_handler_t::replace));
    }
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return ids;
}

// str | [str] | [id] | [[id]] under `key`.
ParsedRequest parse_inputs(const json& body, const char* key, const Tokenizer& tok,
                           const RequestLimits& limits, bool allow_strings, bool allow_ids) {
  if (!body.is_object())
    throw bad_request(std::string("expected a JSON object, got ") + body.type_name());
  check_model_field(body);
  auto it = body.find(key);
  const std::string k = std::string("\"") + key + "\"";
  if (it == body.end() || it->is_null()) throw bad_request("missing field " + k);
  const json& v = *it;
  ParsedRequest out;
  if (allow_strings && v.is_string()) {
    out.single = true;
    add_text(out, v, k, tok, limits);
    return out;
  }
  if (!v.is_array())
    throw bad_request(k + ": expected a string or a list, got " + std::string(v.type_name()));
  if (allow_ids && !v.empty() && v[0].is_number()) {
    out.single = true;
    add_sequence(out, token_ids(v, k, tok, limits), k, tok, limits);
    return out;
  }
  check_count(static_cast<int64_t>(v.size()), k, limits);
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string where = k + "[" + std::to_string(i) + "]";
    if (allow_ids && v[i].is_array()) {
      add_sequence(out, token_ids(v[i], where, tok, limits), where, tok, limits);
    } else if (allow_strings) {
      add_text(out, v[i], where, tok, limits);
    } else {
      throw bad_request(where + ": expected a list of token ids, got " +
                        std::string(v[i].type_name()));
    }
  }
  return out;
}

std::string text_of(const json& record, const char* key, const std::string& where) {
  auto it = record.find(key);
  if (it == record.end() || it->is_null()) {
    throw bad_request(where + ": missing field \"" + key + "\" (a string or a messages list)");
  }
  try {
    return render_text_field(*it, where + ".\"" + key + "\"");
  } catch (const Error& e) {
    throw bad_request(e.what());
  }
}

TemplateKind wrapper_of(const json& record, const std::string& where) {
  auto it = record.find("wrapper");
  if (it == record.end() || it->is_null()) return TemplateKind::Finetune;
  if (it->is_string() && (*it == "sft" || *it == "finetune")) return TemplateKind::Finetune;
  if (it->is_string() && *it == "pretrain") return TemplateKind::Pretrain;
  throw bad_request(where + ".\"wrapper\": expected \"sft\", \"finetune\" or \"pretrain\"");
}

void add_record(ParsedRequest& out, const json& record, const std::string& where,
                const Tokenizer& tok, const RequestLimits& limits) {
  if (!record.is_object())
    throw bad_request(where + ": expected an object, got " + std::string(record.type_name()));
  std::vector<std::string> outputs;
  auto one = record.find("output"), many = record.find("outputs");
  if ((one == record.end()) == (many == record.end())) {
    throw bad_request(where + ": expected exactly one of \"output\" and \"outputs\"");
  }
  if (one != record.end()) {
    outputs.push_back(text_of(record, "output", where));
  } else {
    if (!many->is_array())
      throw bad_request(where + ".\"outputs\": expected a list, got " +
                        std::string(many->type_name()));
    if (many->empty())
      throw bad_request(where + ".\"outputs\": expected at least one output, got an empty list");
    check_count(out.sequences() + static_cast<int64_t>(many->size()), where + ".\"outputs\"",
                limits);
    for (size_t i = 0; i < many->size(); ++i) {
      try {
        outputs.push_back(
            render_text_field((*many)[i], where + ".\"outputs\"[" + std::to_string(i) + "]"));
      } catch (const Error& e) {
        throw bad_request(e.what());
      }
    }
  }
  check_count(out.sequences() + static_cast<int64_t>(outputs.size()), where, limits);
  TemplateLimits tl{limits.max_length, limits.max_response_length};
  auto group = encode_group_text(tok, wrapper_of(record, where), text_of(record, "prompt", where),
                                 text_of(record, "reference", where), outputs, tl);
  if (!group) {
    throw bad_request(where + ": the reference and an output do not fit the limit of " +
                      std::to_string(limits.max_length) +
                      " tokens per sequence (--max-length) even without the prompt");
  }
  for (const auto& c : group->candidates) {
    out.sequence_tokens.push_back(static_cast<int64_t>(group->prefix.size() + c.size()));
  }
  out.group_sizes.push_back(group->candidates.size());
  out.groups.push_back(std::move(*group));
}

json usage(const ParsedRequest& req) {
  return {{"prompt_tokens", req.tokens()},
          {"total_tokens", req.tokens()},
          {"completion_tokens", 0},
          {"prompt_tokens_details", nullptr}};
}

// The OpenAI-style list answer of /pooling, vLLM's /classify and /v1/embeddings.
json list_response(const ParsedRequest& req, json data, const ResponseInfo& info) {
  return {{"id", info.id},       {"object", "list"},        {"created", info.created},
          {"model", info.model}, {"data", std::move(data)}, {"usage", usage(req)}};
}

}  // namespace

PoolingApi parse_pooling_api(const std::string& name) {
  if (name == "vllm") return PoolingApi::Vllm;
  if (name == "lmdeploy") return PoolingApi::Lmdeploy;
  throw Error("--api: expected \"vllm\" or \"lmdeploy\", got \"" + name + "\"");
}

int64_t ParsedRequest::tokens() const {
  int64_t n = 0;
  for (int64_t t : sequence_tokens) n += t;
  return n;
}

json parse_body(const std::string& body, const RequestLimits& limits) {
  if (body.empty()) throw bad_request("empty body: expected a JSON object");
  // The depth check runs while parsing, so a deeply nested body is refused before it is built.
  json::parser_callback_t depth_guard = [&](int depth, json::parse_event_t, json&) {
    if (depth > limits.max_json_depth) {
      throw bad_request("JSON nesting deeper than " + std::to_string(limits.max_json_depth) +
                        " levels");
    }
    return true;
  };
  try {
    return json::parse(body, depth_guard);
  } catch (const json::exception& e) {  // parse errors and numbers too large for a double
    throw bad_request(std::string("malformed JSON: ") + e.what());
  }
}

namespace {

// Fields of vLLM's pooling and embedding requests that polar does not serve: refused by name
// rather than ignored, so a client never gets rewards for something it did not ask.
void check_unserved_fields(const json& body) {
  if (!body.is_object()) return;
  auto it = body.find("encoding_format");
  if (it != body.end() && !it->is_null() && *it != "float") {
    throw bad_request("\"encoding_format\": only \"float\" is served, got " +
                      it->dump(-1, ' ', false, json::error_handler_t::replace) +
                      " (leave it out or send \"float\")");
  }
  if (body.contains("messages")) {
    throw bad_request(
        "\"messages\": chat requests are not served; send POLAR-formatted strings in \"input\" "
        "(or records to POST /score)");
  }
  it = body.find("add_special_tokens");
  if (it != body.end() && *it == false) {
    throw bad_request(
        "\"add_special_tokens\": false is not served: formatted strings always get the reward "
        "model's bos, as in training");
  }
}

}  // namespace

ParsedRequest parse_pooling(const json& body, const Tokenizer& tok, const RequestLimits& limits) {
  check_unserved_fields(body);
  return parse_inputs(body, "input", tok, limits, true, true);
}

ParsedRequest parse_classify(const json& body, const Tokenizer& tok, const RequestLimits& limits) {
  check_unserved_fields(body);
  if (body.is_object() && body.contains("input") && !body.contains("text") &&
      !body.contains("input_ids")) {
    // vLLM's classify request. Rewards are the raw score (a sigmoid would squash them into
    // (0, 1) and lose their scale), so only use_activation false (or left out) is served.
    auto it = body.find("use_activation");
    if (it != body.end() && !it->is_null() && *it != false) {
      throw bad_request("\"use_activation\": only false is served (rewards are raw scores), got " +
                        it->dump(-1, ' ', false, json::error_handler_t::replace));
    }
    ParsedRequest out = parse_inputs(body, "input", tok, limits, true, true);
    out.vllm_classify = true;
    return out;
  }
  if (body.is_object() && body.contains("input_ids") && !body.contains("text")) {
    return parse_inputs(body, "input_ids", tok, limits, false, true);
  }
  return parse_inputs(body, "text", tok, limits, true, false);
}

ParsedRequest parse_embeddings(const json& body, const Tokenizer& tok,
                               const RequestLimits& limits) {
  check_unserved_fields(body);
  auto it = body.is_object() ? body.find("dimensions") : body.end();
  if (body.is_object() && it != body.end() && !it->is_null() && *it != 1) {
    throw bad_request("\"dimensions\": the reward is one number, got " +
                      it->dump(-1, ' ', false, json::error_handler_t::replace));
  }
  return parse_inputs(body, "input", tok, limits, true, true);
}

ParsedRequest parse_score(const json& body, const Tokenizer& tok, const RequestLimits& limits) {
  ParsedRequest out;
  if (body.is_object()) {
    out.single = true;
    add_record(out, body, "body", tok, limits);
    return out;
  }
  if (!body.is_array())
    throw bad_request(std::string("body: expected an object or a list of objects, got ") +
                      body.type_name());
  check_count(static_cast<int64_t>(body.size()), "body", limits);
  for (size_t i = 0; i < body.size(); ++i)
    add_record(out, body[i], "body[" + std::to_string(i) + "]", tok, limits);
  return out;
}

json pooling_response(PoolingApi api, const ParsedRequest& req, const std::vector<float>& rewards,
                      const ResponseInfo& info) {
  json data = json::array();
  for (size_t i = 0; i < rewards.size(); ++i) {
    // vLLM: one row per pooled token, the reward last ([-1][0]); lmdeploy: the scalar itself.
    json value =
        api == PoolingApi::Vllm ? json::array({json::array({rewards[i]})}) : json(rewards[i]);
    data.push_back({{"index", i}, {"object", "pooling"}, {"data", std::move(value)}});
  }
  return list_response(req, std::move(data), info);
}

json classify_response(const ParsedRequest& req, const std::vector<float>& rewards,
                       const ResponseInfo& info) {
  if (req.vllm_classify) {  // vLLM: one class, its raw score as the only "prob"
    json data = json::array();
    for (size_t i = 0; i < rewards.size(); ++i) {
      data.push_back({{"index", i},
                      {"label", "LABEL_0"},
                      {"probs", json::array({rewards[i]})},
                      {"num_classes", 1}});
    }
    return list_response(req, std::move(data), info);
  }
  json out = json::array();
  for (size_t i = 0; i < rewards.size(); ++i) {
    json meta{{"id", info.id + "-" + std::to_string(i)},
              {"prompt_tokens", req.sequence_tokens[i]},
              {"e2e_latency", info.latency_s}};
    out.push_back(
        {{"index", i}, {"embedding", json::array({rewards[i]})}, {"meta_info", std::move(meta)}});
  }
  return req.single ? out[0] : out;
}

json embeddings_response(const ParsedRequest& req, const std::vector<float>& rewards,
                         const ResponseInfo& info) {
  json data = json::array();
  for (size_t i = 0; i < rewards.size(); ++i) {
    data.push_back(
        {{"object", "embedding"}, {"index", i}, {"embedding", json::array({rewards[i]})}});
  }
  return list_response(req, std::move(data), info);
}

json score_response(const ParsedRequest& req, const std::vector<float>& rewards,
                    const ResponseInfo& info) {
  json results = json::array();
  size_t next = 0;
  for (size_t g = 0; g < req.group_sizes.size(); ++g) {
    json r = json::array();
    for (size_t c = 0; c < req.group_sizes[g]; ++c) r.push_back(rewards[next++]);
    results.push_back({{"index", g}, {"rewards", std::move(r)}});
  }
  json out{{"id", info.id},
           {"object", "score"},
           {"created", info.created},
           {"model", info.model},
           {"usage", usage(req)}};
  if (req.single) {
    out["rewards"] = results[0]["rewards"];
  } else {
    out["data"] = std::move(results);
  }
  return out;
}

json error_body(int status, const std::string& message) {
  const char* type = status == 404   ? "NotFoundError"
                     : status == 401 ? "AuthenticationError"
                     : status == 413 ? "PayloadTooLargeError"
                     : status >= 500 ? "InternalServerError"
                                     : "BadRequestError";
  return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", status}}},
          {"object", "error"},
          {"message", message},
          {"type", type},
          {"code", status}};
}

void check_request_tokens(const ParsedRequest& req, const RequestLimits& limits) {
  const int64_t tokens = req.tokens();
  if (tokens > limits.max_request_tokens) {
    throw HttpError(413, "the request holds " + std::to_string(tokens) + " tokens, more than the " +
                             std::to_string(limits.max_request_tokens) +
                             " one request may hold in memory (--max-request-tokens); split it");
  }
}

std::string strip_chat_template(const std::string& text) {
  // Turn headers (a role name after the marker) and markers, longest first.
  static const char* const kHeaders[] = {"<|start_header_id|>system<|end_header_id|>",
                                         "<|start_header_id|>user<|end_header_id|>",
                                         "<|start_header_id|>assistant<|end_header_id|>",
                                         "<|im_start|>system",
                                         "<|im_start|>user",
                                         "<|im_start|>assistant"};
  static const char* const kMarkers[] = {
      "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>", "[INST]",
      "[/INST]",           "<<SYS>>",    "<</SYS>>",        "<s>",        "</s>"};
  std::string out = text;
  for (const char* h : kHeaders) {
    for (size_t at; (at = out.find(h)) != std::string::npos;)
      out.replace(at, std::strlen(h), "\x01");
  }
  for (const char* m : kMarkers) {
    for (size_t at; (at = out.find(m)) != std::string::npos;)
      out.replace(at, std::strlen(m), "\x01");
  }
  // Pieces between markers, trimmed of the newlines templates put around turns, joined by "\n".
  std::string joined;
  size_t start = 0;
  for (;;) {
    const size_t end = out.find('\x01', start);
    std::string piece =
        out.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const size_t a = piece.find_first_not_of(" \n\r\t");
    if (a != std::string::npos) {
      piece = piece.substr(a, piece.find_last_not_of(" \n\r\t") - a + 1);
      joined += (joined.empty() ? "" : "\n") + piece;
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return joined;
}

ParsedRequest parse_get_reward(const json& body, const Tokenizer& tok,
                               const RequestLimits& limits) {
  if (!body.is_object())
    throw bad_request(std::string("expected a JSON object, got ") + body.type_name());
  auto list = [&](const char* key) -> const json& {
    auto it = body.find(key);
    if (it == body.end() || !it->is_array())
      throw bad_request(std::string("\"") + key + "\": expected a list of strings");
    return *it;
  };
  const json& queries = list("query");
  const json& prompts = list("prompts");
  const json& labels = list("labels");
  if (prompts.size() != queries.size() || labels.size() != queries.size()) {
    throw bad_request(
        "\"query\", \"prompts\" and \"labels\" must have one entry per rollout, got " +
        std::to_string(queries.size()) + ", " + std::to_string(prompts.size()) + " and " +
        std::to_string(labels.size()) +
        " (labels are the references: OpenRLHF's --data.label_key)");
  }
  check_count(static_cast<int64_t>(queries.size()), "\"query\"", limits);
  ParsedRequest out;
  for (size_t i = 0; i < queries.size(); ++i) {
    const std::string where = "[" + std::to_string(i) + "]";
    for (const char* key : {"query", "prompts", "labels"}) {
      const json& v = body[key][i];
      if (!v.is_string()) {
        throw bad_request(std::string("\"") + key + "\"" + where + ": expected a string, got " +
                          v.type_name());
      }
    }
    const std::string& query = queries[i].get_ref<const std::string&>();
    const std::string& prompt = prompts[i].get_ref<const std::string&>();
    // The query is the prompt followed by the response; a query that does not start with its
    // prompt is split where the last assistant turn starts.
    std::string response;
    if (query.compare(0, prompt.size(), prompt) == 0) {
      response = query.substr(prompt.size());
    } else {
      size_t at = std::string::npos;
      for (const char* h :
           {"<|im_start|>assistant", "<|start_header_id|>assistant<|end_header_id|>", "[/INST]"}) {
        const size_t p = query.rfind(h);
        if (p != std::string::npos && (at == std::string::npos || p > at)) at = p;
      }
      if (at == std::string::npos) {
        throw bad_request("\"query\"" + where +
                          " does not start with its prompt and has no assistant turn to split at");
      }
      response = query.substr(at);
    }
    json record = {{"prompt", strip_chat_template(prompt)},
                   {"reference", labels[i]},
                   {"output", strip_chat_template(response)}};
    for (const char* key : {"prompt", "reference", "output"}) {
      if (record[key].get_ref<const std::string&>().empty()) record[key] = " ";
    }
    add_record(out, record, "rollout" + where, tok, limits);
  }
  return out;
}

json get_reward_response(const std::vector<float>& rewards) {
  return {{"rewards", rewards}, {"scores", rewards}, {"extra_logs", json::object()}};
}

std::string json_text(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace polar::serve
