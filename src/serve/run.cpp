// `polar serve` as a process: SIGTERM/SIGINT are blocked in every thread and taken by one waiting
// thread, which stops the server; serve() then finishes the requests in flight and returns.
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <thread>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/runtime/device.h"
#include "polar/serve/server.h"

namespace polar::serve {

namespace {

Precision resolve_precision(const std::string& name, const torch::Device& device) {
  if (name == "auto") return device.is_cuda() ? Precision::Bf16 : Precision::Fp32;
  const Precision precision = parse_enum<Precision>(name, "--precision (or auto)");
  POLAR_CHECK(precision == Precision::Fp32 || device.is_cuda(),
              "--precision bf16 needs a CUDA device (the CPU path is fp32)");
  return precision;
}

std::string default_model_name(const std::string& checkpoint) {
  std::filesystem::path p = std::filesystem::path(checkpoint).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().empty() ? "polar" : p.filename().string();
}

// A server runs for hours with batches of every size. glibc raises its mmap threshold (to up to
// 32 MiB) each time a large block is freed, after which large tensors come from its arenas, where
// blocks of ever new sizes fragment the heap and the resident size creeps up. A fixed threshold
// keeps every large tensor in its own mapping, returned to the system when freed (the batcher
// trims the small-block arenas every few seconds). glibc also opens a new arena (a fresh 64 MiB
// heap) whenever a thread finds every arena locked, up to 8 per core: with httplib's pool of
// threads that happens at random hours into a run and shows as a step in the resident size, so
// the arenas are capped at two, both opened in the first batches.
void settle_allocator() {
#ifdef __GLIBC__
  constexpr int kMmapThreshold = 4 << 20;
  constexpr int kArenas = 2;
  if (mallopt(M_MMAP_THRESHOLD, kMmapThreshold) != 1 || mallopt(M_ARENA_MAX, kArenas) != 1)
    spdlog::warn("serve: mallopt failed");
#endif
}

}  // namespace

void run_server(const std::string& checkpoint, const std::string& device_name,
                const std::string& precision, ServeOptions options) {
  // Blocked before any thread exists (the model's, the batcher's, httplib's), so only the
  // waiting thread below ever receives these signals.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A client that hangs up before its answer is written must not kill the server.
  std::signal(SIGPIPE, SIG_IGN);

  check_exposure(options);  // before the model is loaded: a refusal should be quick
  settle_allocator();
  const torch::Device device = resolve_device(device_name, 0);
  options.batcher.score.precision = resolve_precision(precision, device);
  options.batcher.score.limits =
      TemplateLimits{options.limits.max_length, options.limits.max_response_length};
  if (options.model_name.empty()) options.model_name = default_model_name(checkpoint);
  options.model_root = checkpoint;
  LoadedModel model = load_model(checkpoint, device);

  RewardServer server(model, options);
  const int port = server.bind();
  std::atomic<bool> signalled{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    signalled = true;
    spdlog::info("serve: {} received, finishing the requests in flight", strsignal(sig));
    server.stop();
  });
  spdlog::info("serve: listening on http://{}:{} (model \"{}\", {} {}, /pooling answers as {}, {})",
               options.host, port, options.model_name, device.str(),
               choice_name(options.batcher.score.precision),
               options.api == PoolingApi::Vllm ? "vllm" : "lmdeploy",
               options.api_key.empty() ? "no API key" : "API key required");
  if (!options.port_file.empty()) write_file_atomic(options.port_file, std::to_string(port) + "\n");
  server.serve();
  if (!signalled) pthread_kill(waiter.native_handle(), SIGTERM);  // wake the waiter
  waiter.join();
  spdlog::info("serve: stopped");
}

}  // namespace polar::serve
