// Reading the policy pool file; see sample/pool.h.
#include "polar/sample/pool.h"

#include <filesystem>
#include <set>

#include "polar/common/error.h"
#include "polar/common/json_config.h"

namespace polar::sample {

namespace fs = std::filesystem;
using nlohmann::json;

Engine parse_engine(const std::string& name, const std::string& where) {
  if (name == "vllm") return Engine::Vllm;
  if (name == "sglang") return Engine::Sglang;
  if (name == "lmdeploy") return Engine::Lmdeploy;
  if (name == "openai") return Engine::OpenAI;
  throw Error(where + ": expected \"vllm\", \"sglang\", \"lmdeploy\" or \"openai\", got \"" + name +
              "\"");
}

const char* engine_name(Engine engine) {
  switch (engine) {
    case Engine::Sglang:
      return "sglang";
    case Engine::Lmdeploy:
      return "lmdeploy";
    case Engine::OpenAI:
      return "openai";
    default:
      return "vllm";
  }
}

namespace {

void read_sampling(const json* obj, const std::string& where, SamplingParams& p) {
  if (!obj) return;
  ConfigReader r(*obj, where);
  r.get("temperature", p.temperature);
  r.get("top_p", p.top_p);
  r.get("top_k", p.top_k);
  r.get("max_new_tokens", p.max_new_tokens);
  r.get("stop", p.stop);
  r.get("repetition_penalty", p.repetition_penalty);
  r.get("min_p", p.min_p);
  r.finish();
}

std::string resolve(const std::string& path, const std::string& base_dir) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

PolicySpec read_entry(const json& entry, const std::string& where, const SamplingParams& defaults,
                      const std::string& base_dir) {
  POLAR_CHECK(entry.is_object(), where,
              ": expected an object with \"name\" and \"endpoint\" or \"model_dir\"");
  PolicySpec p;
  p.sampling = defaults;
  ConfigReader r(entry, where);
  r.get("name", p.name);
  POLAR_CHECK(!p.name.empty(), where, ": \"name\" is missing or empty (every policy needs a name)");
  const std::string at = where + " (\"" + p.name + "\")";
  std::string kind =
      entry.contains("chat") && entry["chat"].is_boolean() && entry["chat"].get<bool>() ? "chat"
                                                                                        : "base";
  r.get("kind", kind);
  POLAR_CHECK(kind == "base" || kind == "chat", at, ".kind: expected \"base\" or \"chat\", got \"",
              kind, "\"");
  p.kind = kind == "chat" ? PolicyKind::Chat : PolicyKind::Base;
  p.is_server = entry.contains("endpoint");
  POLAR_CHECK(p.is_server != entry.contains("model_dir"), at,
              ": give exactly one of \"endpoint\" (an OpenAI-compatible "
              "server) and \"model_dir\" (a built-in model)");
  if (p.is_server) {
    ServerSpec& s = p.server;
    r.get("endpoint", s.endpoint);
    r.get("model", s.model);
    s.chat = p.kind == PolicyKind::Chat;
    r.get("chat", s.chat);
    std::string engine = "vllm";
    r.get("engine", engine);
    s.engine = parse_engine(engine, at + ".engine");
    r.get("concurrency", s.concurrency);
    r.get("timeout_s", s.timeout_s);
    r.get("max_retries", s.max_retries);
    r.get("retry_backoff_s", s.retry_backoff_s);
    POLAR_CHECK(s.endpoint.rfind("http://", 0) == 0 || s.endpoint.rfind("https://", 0) == 0, at,
                ".endpoint: expected http://HOST:PORT or https://..., got \"", s.endpoint, "\"");
    POLAR_CHECK(!s.model.empty(), at, ": \"model\" is missing (the model name the server serves)");
    POLAR_CHECK(s.concurrency >= 1, at, ".concurrency: expected an integer >= 1");
    // Bounded so that a timeout is an int64 count of microseconds and the doubling waits
    // (retry_backoff_s * 2^max_retries) stay durations the clock can hold.
    POLAR_CHECK(s.timeout_s >= 1e-3 && s.timeout_s <= 1e6, at,
                ".timeout_s: expected seconds in [0.001, 1e6], got ", s.timeout_s);
    POLAR_CHECK(s.max_retries >= 0 && s.max_retries <= 20, at,
                ".max_retries: expected an integer in [0, 20], got ", s.max_retries);
    POLAR_CHECK(s.retry_backoff_s >= 0 && s.retry_backoff_s <= 3600, at,
                ".retry_backoff_s: expected seconds in [0, 3600], got ", s.retry_backoff_s);
  } else {
    BuiltinSpec& b = p.builtin;
    r.get("model_dir", b.model_dir);
    r.get("tokenizer", b.tokenizer);
    r.get("chat_template", b.chat_template);
    POLAR_CHECK(b.chat_template.empty() || b.chat_template.find("{prompt}") != std::string::npos,
                at, ".chat_template: expected a text with \"{prompt}\" where the prompt goes");
    r.get("device", b.device);
    r.get("dtype", b.dtype);
    r.get("batch_size", b.batch_size);
    POLAR_CHECK(!b.model_dir.empty(), at, ".model_dir: expected a model directory, got \"\"");
    b.model_dir = resolve(b.model_dir, base_dir);
    b.tokenizer = resolve(b.tokenizer, base_dir);
    POLAR_CHECK(b.batch_size >= 1, at, ".batch_size: expected an integer >= 1");
  }
  read_sampling(r.object("sampling"), at + ".sampling", p.sampling);
  r.finish();
  p.sampling.validate(at + ".sampling");
  if (p.is_server && p.server.engine == Engine::OpenAI) {
    POLAR_CHECK(
        p.sampling.top_k == 0 && p.sampling.min_p == 0 && p.sampling.repetition_penalty == 1, at,
        ".sampling: engine \"openai\" takes no top_k, min_p or repetition_penalty; "
        "set top_k 0 (and leave the others out) or name the server's engine");
  }
  if (!p.is_server) {
    POLAR_CHECK(p.sampling.min_p == 0 && p.sampling.repetition_penalty == 1, at,
                ".sampling: built-in policies have no min_p or repetition_penalty filter");
    POLAR_CHECK(p.kind == PolicyKind::Base || !p.builtin.chat_template.empty(), at,
                ": a built-in \"chat\" policy needs \"chat_template\" (its prompt format with "
                "\"{prompt}\"; tokenizer_config.json's Jinja templates are not run)");
  }
  return p;
}

}  // namespace

std::vector<PolicySpec> parse_pool(const json& pool, const std::string& where,
                                   const std::string& base_dir) {
  POLAR_CHECK(pool.is_object(), where, ": expected {\"policies\": [...]}");
  POLAR_CHECK(pool.contains("policies") && pool["policies"].is_array() && !pool["policies"].empty(),
              where, ": \"policies\": expected a non-empty list of policies");
  json rest = pool;
  rest.erase("policies");
  ConfigReader r(rest, where);
  SamplingParams defaults;
  read_sampling(r.object("sampling"), r.path("sampling"), defaults);
  r.finish();
  defaults.validate(r.path("sampling"));
  std::vector<PolicySpec> out;
  std::set<std::string> names;
  for (size_t i = 0; i < pool["policies"].size(); ++i) {
    const std::string at = where + ": policies[" + std::to_string(i) + "]";
    out.push_back(read_entry(pool["policies"][i], at, defaults, base_dir));
    POLAR_CHECK(names.insert(out.back().name).second, at, ": the name \"", out.back().name,
                "\" is used by an earlier policy; names must be unique");
  }
  return out;
}

std::vector<PolicySpec> read_pool(const std::string& path) {
  return parse_pool(read_json_file(path), path, fs::path(path).parent_path().string());
}

}  // namespace polar::sample
