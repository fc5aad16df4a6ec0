// OpenAI-compatible completion client over cpp-httplib; see
// sample/openai_client.h.
#include "polar/sample/openai_client.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <chrono>
#include <thread>

#include "polar/common/error.h"

namespace polar::sample {

using nlohmann::json;

namespace {

// Whether a failed try is worth repeating: connection problems (status 0), 408,
// 429 and 5xx.
bool retryable(int status) {
  return status == 0 || status == 408 || status == 429 || status >= 500;
}

std::string excerpt(const std::string& body) {
  return body.size() > 300 ? body.substr(0, 300) + "..." : body;
}

const json& field(const json& obj, const char* key, const std::string& where) {
  POLAR_CHECK(obj.is_object() && obj.contains(key), where, ": the response has no \"", key, "\"");
  return obj[key];
}

}  // namespace

OpenAIClient::OpenAIClient(std::string policy, ServerSpec spec)
    : policy_(std::move(policy)), spec_(std::move(spec)) {
  const size_t scheme_end = spec_.endpoint.find("://");
  POLAR_CHECK(scheme_end != std::string::npos, where(), ": expected http://HOST:PORT");
  const size_t path_start = spec_.endpoint.find('/', scheme_end + 3);
  host_ = spec_.endpoint.substr(0, path_start);
  prefix_ = path_start == std::string::npos ? "" : spec_.endpoint.substr(path_start);
  while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
  if (prefix_.size() >= 3 && prefix_.compare(prefix_.size() - 3, 3, "/v1") == 0)
    prefix_.resize(prefix_.size() - 3);
}

std::string OpenAIClient::where() const {
  return "policy \"" + policy_ + "\" (" + spec_.endpoint + ")";
}

std::pair<int, std::string> OpenAIClient::send(const std::string& method, const std::string& path,
                                               const std::string& body) const {
  httplib::Client client(host_);
  const auto timeout = std::chrono::microseconds(static_cast<int64_t>(spec_.timeout_s * 1e6));
  client.set_connection_timeout(timeout);
  client.set_read_timeout(timeout);
  client.set_write_timeout(timeout);
  double backoff = spec_.retry_backoff_s;
  std::string last_error;
  for (int64_t attempt = 0;; ++attempt) {
    auto res = method == "GET" ? client.Get(prefix_ + path)
                               : client.Post(prefix_ + path, body, "application/json");
    int status = 0;
    if (res) {
      status = res->status;
      if (!retryable(status)) return {status, res->body};
      last_error = "HTTP " + std::to_string(status) + ": " + excerpt(res->body);
    } else {
      last_error = httplib::to_string(res.error());
    }
    if (attempt >= spec_.max_retries) break;
    spdlog::warn("{}: {} {} failed ({}); retry {}/{} in {:.1f}s", where(), method, prefix_ + path,
                 last_error, attempt + 1, spec_.max_retries, backoff);
    std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
    backoff *= 2;
  }
  throw Error(where() + ": " + method + " " + prefix_ + path + " failed after " +
              std::to_string(spec_.max_retries + 1) + " tries: " + last_error);
}

void OpenAIClient::check() const {
  const auto [status, body] = send("GET", "/v1/models", "");
  if (status != 200) {
    spdlog::warn("{}: GET /v1/models answered HTTP {}; the model list is not checked", where(),
                 status);
    return;
  }
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  POLAR_CHECK(j.is_object() && j.contains("data") && j["data"].is_array(), where(),
              ": GET /v1/models: expected {\"data\": [{\"id\": ...}]}, got ", excerpt(body));
  std::string served;
  for (const auto& m : j["data"]) {
    if (!m.is_object() || !m.contains("id") || !m["id"].is_string()) continue;
    if (m["id"] == spec_.model) return;
    served += (served.empty() ? "" : ", ") + m["id"].get<std::string>();
  }
  throw Error(where() + ": the server does not serve model \"" + spec_.model +
              "\" (it serves: " + (served.empty() ? "nothing" : served) + ")");
}

bool is_context_length_error(const std::string& body) {
  std::string lower = body.substr(0, 4096);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // vLLM: "This model's maximum context length is N tokens. However, you requested M tokens";
  // SGLang: "The input (N tokens) is longer than the model's context length (M tokens)";
  // lmdeploy: "... exceed session_len ..."; OpenAI: "context_length_exceeded".
  for (const char* phrase : {"context length", "context_length", "maximum context", "max_model_len",
                             "session_len", "too long", "longer than the model"}) {
    if (lower.find(phrase) != std::string::npos) return true;
  }
  return false;
}

json OpenAIClient::request_body(const std::string& prompt, const SamplingParams& params,
                                uint64_t seed) const {
  // Every parameter is sent: a server fills the ones left out from the model's
  // generation_config, and the samples would not follow the pool file.
  json body = {{"model", spec_.model},
               {"max_tokens", params.max_new_tokens},
               {"temperature", params.temperature},
               {"top_p", params.top_p},
               {"seed", seed & 0x7fffffffffffffffull},
               {"n", 1}};
  switch (spec_.engine) {
    case Engine::Vllm:
    case Engine::Sglang:  // -1 is their "off"
      body["top_k"] = params.top_k > 0 ? params.top_k : -1;
      body["min_p"] = params.min_p;
      body["repetition_penalty"] = params.repetition_penalty;
      break;
    case Engine::Lmdeploy:  // rejects top_k -1: left out when off
      if (params.top_k > 0) body["top_k"] = params.top_k;
      body["min_p"] = params.min_p;
      body["repetition_penalty"] = params.repetition_penalty;
      break;
    case Engine::OpenAI:  // knows none of the three (the pool checks they are off)
      break;
  }
  if (!params.stop.empty()) body["stop"] = params.stop;
  if (spec_.chat) {
    body["messages"] = json::array({{{"role", "user"}, {"content", prompt}}});
  } else {
    body["prompt"] = prompt;
  }
  return body;
}

Completion OpenAIClient::complete(const std::string& prompt, const SamplingParams& params,
                                  uint64_t seed) const {
  const std::string path = spec_.chat ? "/v1/chat/completions" : "/v1/completions";
  const auto [status, body] = send("POST", path, request_body(prompt, params, seed).dump());
  if (status == 400 && is_context_length_error(body)) {
    Completion c;
    c.context_exceeded = true;
    c.error = excerpt(body);
    return c;
  }
  POLAR_CHECK(status == 200, where(), ": POST ", path, " answered HTTP ", status, ": ",
              excerpt(body));
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  const std::string at = where() + ": POST " + path;
  POLAR_CHECK(!j.is_discarded(), at, ": the response is not JSON: ", excerpt(body));
  const json& choices = field(j, "choices", at);
  POLAR_CHECK(choices.is_array() && !choices.empty() && choices[0].is_object(), at,
              ": \"choices\": expected a non-empty list, got ", excerpt(choices.dump()));
  const json& text = spec_.chat ? field(field(choices[0], "message", at), "content", at)
                                : field(choices[0], "text", at);
  POLAR_CHECK(text.is_string(), at,
              ": the completion text is not a string: ", excerpt(text.dump()));
  Completion c;
  c.text = text.get<std::string>();
  if (choices[0].contains("finish_reason") && choices[0]["finish_reason"].is_string()) {
    c.finish = choices[0]["finish_reason"].get<std::string>();
  }
  if (j.contains("usage") && j["usage"].is_object() && j["usage"].contains("completion_tokens") &&
      j["usage"]["completion_tokens"].is_number_integer()) {
    c.tokens = j["usage"]["completion_tokens"].get<int64_t>();
  }
  return c;
}

}  // namespace polar::sample
