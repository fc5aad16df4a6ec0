// `polar serve`: an HTTP reward server for RL frameworks and POLAR's RewardModelClient.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdlib>
#include <memory>

#include "polar/cli/commands.h"
#include "polar/common/error.h"
#include "polar/serve/server.h"

namespace polar::cli {

namespace {

struct ServeArgs {
  std::string checkpoint, device = "auto", precision = "auto", api = "vllm";
  double max_wait_ms = 2.0;
  serve::ServeOptions options;
};

}  // namespace

void add_serve_command(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  serve::ServeOptions& o = a->options;
  auto* s = app.add_subcommand("serve",
                               "HTTP reward server (vLLM/lmdeploy /pooling, SGLang and vLLM "
                               "/classify, /v1/embeddings, /score, OpenRLHF /get_reward)");
  s->add_option("--checkpoint", a->checkpoint, "checkpoint directory (e.g. runs/x/final)")
      ->required();
  s->add_option("--host", o.host, "address to bind (default 127.0.0.1: this machine only)");
  s->add_option("--port", o.port, "port (0: any free port)");
  s->add_option("--port-file", o.port_file, "write the bound port here once listening");
  s->add_option("--api", a->api, "/pooling response style: vllm | lmdeploy");
  s->add_option("--served-model-name", o.model_name,
                "model name in responses (default: checkpoint dir name)");
  s->add_option("--device", a->device, "auto | cpu | cuda[:N]");
  s->add_option("--precision", a->precision, "auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16");
  s->add_option("--max-length", o.limits.max_length, "tokens per sequence (longer: 400)");
  s->add_option("--max-response-length", o.limits.max_response_length,
                "/score: tokens per reference/output");
  s->add_option("--max-sequences", o.limits.max_sequences,
                "sequences per request (more: 400; 0, the default: no cap, a large request is "
                "split into batches)");
  s->add_option("--max-request-tokens", o.limits.max_request_tokens,
                "tokens one request may hold in memory (more: 413)");
  s->add_option("--max-body-bytes", o.max_body_bytes, "request body size (larger: 413)");
  s->add_flag("--normalize", o.normalize,
              "serve (reward - mean) / std with CHECKPOINT/reward_stats.json (`polar eval "
              "--save-stats`)");
  s->add_option("--batch-tokens", o.batcher.batch_tokens, "tokens per forward batch");
  s->add_option("--row-tokens", o.batcher.score.row_tokens, "packed row length (as polar score)");
  s->add_option("--max-wait-ms", a->max_wait_ms,
                "how long a request may wait for others to batch with");
  s->add_option("--http-threads", o.http_threads, "connections served at once");
  s->add_option("--read-timeout", o.read_timeout_s, "seconds to wait for a slow client's bytes");
  auto* key = s->add_option("--api-key", o.api_key,
                            "require 'Authorization: Bearer KEY' on every endpoint but /health "
                            "(default: $POLAR_API_KEY)");
  s->add_flag("--allow-unauthenticated", o.allow_unauthenticated,
              "serve on a non-loopback --host without an API key");
  s->callback([a, key] {
    serve::ServeOptions options = a->options;
    if (key->count() > 0) {
      POLAR_CHECK(!options.api_key.empty(), "--api-key: expected a non-empty key");
    } else if (const char* env = std::getenv("POLAR_API_KEY"); env != nullptr && *env != '\0') {
      options.api_key = env;
    }
    options.api = serve::parse_pooling_api(a->api);
    POLAR_CHECK(a->max_wait_ms >= 0 && a->max_wait_ms <= 1000,
                "--max-wait-ms: expected 0..1000, got ", a->max_wait_ms);
    options.batcher.max_wait =
        std::chrono::microseconds(static_cast<int64_t>(a->max_wait_ms * 1000));
    serve::run_server(a->checkpoint, a->device, a->precision, options);
  });
}

}  // namespace polar::cli
