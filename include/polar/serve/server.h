// `polar serve`: an HTTP reward server over one model instance (cpp-httplib, thread per
// connection, dynamic batching into one worker that owns the model). Endpoints:
//   POST /pooling (vLLM or lmdeploy response, --api), POST /classify (SGLang), POST /score
//   (native), GET /health, GET /v1/models, GET /metrics (Prometheus text).
// With an API key every endpoint but /health needs "Authorization: Bearer KEY" (401 otherwise).
// Errors are JSON {"object":"error","message",...} with a 4xx naming the limit or key at fault.
#pragma once

#include <memory>
#include <string>

#include "polar/checkpoint/checkpoint.h"
#include "polar/serve/batcher.h"
#include "polar/serve/protocol.h"

namespace polar::serve {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8000;         // 0 picks a free port
  std::string port_file;   // when set, the bound port is written here once listening
  std::string model_name;  // served as "model"; default: the checkpoint directory's name
  std::string model_root;  // the checkpoint path, shown by /v1/models
  PoolingApi api = PoolingApi::Vllm;
  // Rewards served as (reward - mean) / std with model_root's reward_stats.json (--normalize).
  bool normalize = false;
  RequestLimits limits;
  int64_t max_body_bytes = 64 << 20;
  int http_threads = 16;    // concurrent connections being served
  int read_timeout_s = 10;  // a client that stops sending is dropped (or answered) after this
  BatcherOptions batcher;
  // When set, every request but GET /health must carry "Authorization: Bearer <api_key>".
  std::string api_key;
  // Without an api_key, bind() refuses any address but loopback unless this is set.
  bool allow_unauthenticated = false;
};

// 127.0.0.0/8, ::1 and "localhost": reachable from this machine only.
bool is_loopback_host(const std::string& host);
// Throws unless the server may bind options.host: a loopback address, an api_key, or
// allow_unauthenticated.
void check_exposure(const ServeOptions& options);
// Whether an Authorization header value is "Bearer <key>", in time independent of where (or
// whether) it differs from the key.
bool bearer_matches(const std::string& authorization, const std::string& key);

class RewardServer {
 public:
  RewardServer(LoadedModel& model, ServeOptions options);
  ~RewardServer();
  // Binds host:port (throws polar::Error naming them when it cannot, or when the address is not
  // loopback and there is neither an api_key nor allow_unauthenticated); returns the port.
  int bind();
  // Serves until stop(); then finishes the requests in flight and returns.
  void serve();
  // Safe from any thread, also before serve() has started.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The command: loads the checkpoint on `device` ("auto" | "cpu" | "cuda[:N]"), serves until
// SIGTERM or SIGINT, drains the requests in flight and returns (exit code 0).
void run_server(const std::string& checkpoint, const std::string& device,
                const std::string& precision, ServeOptions options);

}  // namespace polar::serve
