// The HTTP side of `polar serve`: routes, error bodies, metrics, binding and draining.
// cpp-httplib parses HTTP; this file only maps parsed requests to the protocol functions.
#include "polar/serve/server.h"

#include <httplib.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <chrono>
#include <ctime>
#include <thread>

#include "connection.h"
#include "polar/common/error.h"
#include "polar/eval/reward_stats.h"
#include "polar/serve/metrics.h"

namespace polar::serve {

using nlohmann::json;

namespace {

enum class Endpoint { Pooling, Classify, Embeddings, Score, GetReward };

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(json_text(body), "application/json");
}

// What cpp-httplib answered by itself (no route, body too large, unparsable request), explained.
std::string default_error_message(const httplib::Request& req, int status, int64_t max_body_bytes) {
  const std::string path = req.path.size() > 200 ? req.path.substr(0, 200) + "..." : req.path;
  switch (status) {
    case 404:
      return "no endpoint " + req.method + " " + path +
             " (known: POST /pooling, POST /classify, POST /v1/embeddings, POST /score, "
             "POST /get_reward, GET /health, GET /v1/models, GET /metrics)";
    case 413:
      return "request body exceeds the limit of " + std::to_string(max_body_bytes) +
             " bytes (--max-body-bytes)";
    case 414:
      return "request URI too long";
    default:
      return "malformed HTTP request (status " + std::to_string(status) + ")";
  }
}

std::array<unsigned char, SHA256_DIGEST_LENGTH> sha256(const std::string& text) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

bool bearer_matches(const std::string& authorization, const std::string& key) {
  // Digests of equal length, compared by CRYPTO_memcmp: neither the key's length nor the
  // position of the first wrong byte shows in the time taken.
  static const std::string kScheme = "Bearer ";
  const bool scheme = authorization.size() >= kScheme.size() &&
                      authorization.compare(0, kScheme.size(), kScheme) == 0;
  const auto given = sha256(scheme ? authorization.substr(kScheme.size()) : authorization);
  const auto wanted = sha256(key);
  return CRYPTO_memcmp(given.data(), wanted.data(), given.size()) == 0 && scheme;
}

void check_exposure(const ServeOptions& options) {
  POLAR_CHECK(
      !options.api_key.empty() || options.allow_unauthenticated || is_loopback_host(options.host),
      "refusing to serve on ", options.host,
      " without authentication: anyone who can reach it could use the model. Set an API "
      "key (--api-key KEY or POLAR_API_KEY), or pass --allow-unauthenticated");
}

struct RewardServer::Impl {
  LoadedModel& model;
  ServeOptions options;
  DynamicBatcher batcher;
  Metrics metrics;
  httplib::Server http;
  std::atomic<int64_t> next_id{0};
  std::atomic<bool> stop_requested{false}, serving{false}, serve_returned{false};
  int port = -1;

  RewardStats stats;  // applied when options.normalize

  Impl(LoadedModel& m, ServeOptions o)
      : model(m), options(std::move(o)), batcher(m, options.batcher) {
    if (options.normalize) {
      stats = load_reward_stats(options.model_root);
      spdlog::info("serve: rewards normalised with mean {} and std {} (of {} rewards on {})",
                   stats.mean, stats.std, stats.count, stats.data);
    }
  }

  ParsedRequest parse(Endpoint endpoint, const json& body) const {
    const Tokenizer& tok = model.tokenizer;
    switch (endpoint) {
      case Endpoint::Pooling:
        return parse_pooling(body, tok, options.limits);
      case Endpoint::Classify:
        return parse_classify(body, tok, options.limits);
      case Endpoint::Embeddings:
        return parse_embeddings(body, tok, options.limits);
      case Endpoint::Score:
        return parse_score(body, tok, options.limits);
      case Endpoint::GetReward:
        return parse_get_reward(body, tok, options.limits);
    }
    throw Error("unknown endpoint");
  }

  json respond(Endpoint endpoint, const ParsedRequest& req, const std::vector<float>& rewards,
               const ResponseInfo& info) const {
    switch (endpoint) {
      case Endpoint::Pooling:
        return pooling_response(options.api, req, rewards, info);
      case Endpoint::Classify:
        return classify_response(req, rewards, info);
      case Endpoint::Embeddings:
        return embeddings_response(req, rewards, info);
      case Endpoint::Score:
        return score_response(req, rewards, info);
      case Endpoint::GetReward:
        return get_reward_response(rewards);
    }
    throw Error("unknown endpoint");
  }

  // The rewards of `groups`, queued in the batcher; while they wait, a client that closes its
  // connection (a timeout and retry, say) has its queued work dropped.
  std::vector<float> wait_for_rewards(std::vector<EncodedGroup> groups,
                                      const httplib::Request& http_req) {
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    auto future = batcher.submit(std::move(groups), cancel);
    int fd = -2;  // looked up only once a request waits long enough to matter
    for (int waited = 0;
         future.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready; ++waited) {
      if (waited < 5 || cancel->load()) continue;
      if (fd == -2) fd = find_peer_socket(http_req.remote_addr, http_req.remote_port);
      if (fd >= 0 && peer_closed(fd)) {
        spdlog::info("serve: {}:{} closed its connection; its queued work is dropped",
                     http_req.remote_addr, http_req.remote_port);
        cancel->store(true);
        batcher.wake();
      }
    }
    return future.get();
  }

  void handle_scoring(Endpoint endpoint, const httplib::Request& http_req, httplib::Response& res) {
    const auto start = std::chrono::steady_clock::now();
    try {
      ParsedRequest req = parse(endpoint, parse_body(http_req.body, options.limits));
      check_request_tokens(req, options.limits);
      std::vector<float> rewards = wait_for_rewards(std::move(req.groups), http_req);
      if (options.normalize) {
        for (float& r : rewards) r = static_cast<float>(stats.normalize(r));
      }
      ResponseInfo info;
      info.model = options.model_name;
      const char* prefix = endpoint == Endpoint::Pooling      ? "pool-"
                           : endpoint == Endpoint::Classify   ? "classify-"
                           : endpoint == Endpoint::Embeddings ? "embd-"
                           : endpoint == Endpoint::Score      ? "score-"
                                                              : "reward-";
      info.id = prefix + std::to_string(next_id++);
      info.created = unix_now();
      info.latency_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      send_json(res, 200, respond(endpoint, req, rewards, info));
      metrics.observe_latency(info.latency_s);
    } catch (const HttpError& e) {
      send_json(res, e.status(), error_body(e.status(), e.what()));
    } catch (const Error& e) {  // submit() after stop: the server is draining
      send_json(res, 503, error_body(503, e.what()));
    } catch (const std::exception& e) {
      spdlog::error("serve: {} {}: {}", http_req.method, http_req.path, e.what());
      send_json(res, 500, error_body(500, std::string("internal error: ") + e.what()));
    }
  }

  json models() const {
    json card{{"id", options.model_name},   {"object", "model"},
              {"created", unix_now()},      {"owned_by", "polar"},
              {"root", options.model_root}, {"max_model_len", options.limits.max_length}};
    return {{"object", "list"}, {"data", json::array({card})}};
  }

  // Runs before routing: a request without the key ends here, whatever its path.
  httplib::Server::HandlerResponse authenticate(const httplib::Request& q, httplib::Response& r) {
    if (options.api_key.empty() || q.path == "/health")
      return httplib::Server::HandlerResponse::Unhandled;
    if (bearer_matches(q.get_header_value("Authorization"), options.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    const char* why = q.has_header("Authorization")
                          ? "invalid API key in the Authorization header"
                          : "missing API key: send the header 'Authorization: Bearer <key>'";
    send_json(r, 401, error_body(401, why));
    r.set_header("WWW-Authenticate", "Bearer");
    return httplib::Server::HandlerResponse::Handled;
  }

  void routes() {
    http.set_pre_routing_handler(
        [this](const httplib::Request& q, httplib::Response& r) { return authenticate(q, r); });
    http.Post("/pooling", [this](const httplib::Request& q, httplib::Response& r) {
      handle_scoring(Endpoint::Pooling, q, r);
    });
    http.Post("/classify", [this](const httplib::Request& q, httplib::Response& r) {
      handle_scoring(Endpoint::Classify, q, r);
    });
    http.Post("/v1/embeddings", [this](const httplib::Request& q, httplib::Response& r) {
      handle_scoring(Endpoint::Embeddings, q, r);
    });
    http.Post("/score", [this](const httplib::Request& q, httplib::Response& r) {
      handle_scoring(Endpoint::Score, q, r);
    });
    http.Post("/get_reward", [this](const httplib::Request& q, httplib::Response& r) {
      handle_scoring(Endpoint::GetReward, q, r);
    });
    http.Get("/health", [](const httplib::Request&, httplib::Response& r) {
      send_json(r, 200, {{"status", "ok"}});
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& r) {
      send_json(r, 200, models());
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& r) {
      r.set_content(metrics.prometheus_text(batcher.stats()), "text/plain; version=0.0.4");
    });
    http.set_error_handler([this](const httplib::Request& q, httplib::Response& r) {
      if (r.body.empty())
        send_json(r, r.status,
                  error_body(r.status, default_error_message(q, r.status, options.max_body_bytes)));
    });
    http.set_exception_handler(
        [](const httplib::Request&, httplib::Response& r, std::exception_ptr) {
          send_json(r, 500, error_body(500, "internal error"));
        });
    http.set_logger([this](const httplib::Request& q, const httplib::Response& r) {
      metrics.count_request(q.path, r.status);
    });
  }

  void configure() {
    POLAR_CHECK(options.http_threads > 0, "--http-threads must be positive, got ",
                options.http_threads);
    POLAR_CHECK(options.max_body_bytes > 0, "--max-body-bytes must be positive, got ",
                options.max_body_bytes);
    const auto threads = static_cast<size_t>(options.http_threads);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
    http.set_keep_alive_max_count(1000);
    http.set_keep_alive_timeout(5);
    POLAR_CHECK(options.read_timeout_s > 0, "--read-timeout must be positive, got ",
                options.read_timeout_s);
    http.set_read_timeout(options.read_timeout_s);
    http.set_write_timeout(10);
    routes();
  }
};

RewardServer::RewardServer(LoadedModel& model, ServeOptions options)
    : impl_(std::make_unique<Impl>(model, std::move(options))) {
  impl_->configure();
}

RewardServer::~RewardServer() {
  stop();
  impl_->batcher.stop();
}

int RewardServer::bind() {
  Impl& s = *impl_;
  POLAR_CHECK(s.options.port >= 0 && s.options.port <= 65535, "--port: expected 0..65535, got ",
              s.options.port);
  check_exposure(s.options);
  if (s.options.port == 0) {
    s.port = s.http.bind_to_any_port(s.options.host);
  } else {
    s.port = s.http.bind_to_port(s.options.host, s.options.port) ? s.options.port : -1;
  }
  POLAR_CHECK(s.port > 0, "cannot listen on ", s.options.host, ":", s.options.port,
              " (address in use, not a local address, or not permitted)");
  return s.port;
}

void RewardServer::serve() {
  Impl& s = *impl_;
  POLAR_CHECK(s.port > 0, "RewardServer::serve: call bind() first");
  s.serving = true;
  if (!s.stop_requested)
    s.http.listen_after_bind();  // returns once stopped and every connection is done
  s.serve_returned = true;
  s.batcher.stop();
}

void RewardServer::stop() {
  Impl& s = *impl_;
  s.stop_requested = true;
  // httplib's stop() is a no-op until listen has started; wait for that (or for serve() to give
  // up).
  while (s.serving && !s.http.is_running() && !s.serve_returned)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  s.http.stop();
}

}  // namespace polar::serve
