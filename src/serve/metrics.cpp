// Prometheus exposition text (version 0.0.4) for the server's counters.
#include "polar/serve/metrics.h"

#include <fmt/format.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace polar::serve {

namespace {

std::string known_path(const std::string& path) {
  for (const char* p : {"/pooling", "/classify", "/v1/embeddings", "/score", "/get_reward",
                        "/health", "/v1/models", "/metrics"}) {
    if (path == p) return path;
  }
  return "other";
}

}  // namespace

void Metrics::count_request(const std::string& path, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  requests_[{known_path(path), status}]++;
}

void Metrics::observe_latency(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < kLatencyBuckets.size() && seconds > kLatencyBuckets[i]) ++i;
  if (i < kLatencyBuckets.size()) latency_counts_[i]++;
  latency_total_++;
  latency_sum_ += seconds;
}

std::string Metrics::prometheus_text(const BatcherStats& b) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string t;
  t += "# HELP polar_requests_total HTTP requests answered, by path and status code.\n";
  t += "# TYPE polar_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    t += fmt::format("polar_requests_total{{path=\"{}\",code=\"{}\"}} {}\n", key.first, key.second,
                     n);
  }
  auto scalar = [&](const char* name, const char* type, const char* help, int64_t value) {
    t += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  scalar("polar_sequences_total", "counter", "Sequences scored.", b.sequences);
  scalar("polar_tokens_total", "counter", "Tokens run through the model.", b.tokens);
  scalar("polar_batches_total", "counter", "Forward batches run.", b.batches);
  scalar("polar_queue_sequences", "gauge", "Sequences waiting for the model.", b.queued_sequences);
  scalar("polar_cancelled_sequences_total", "counter",
         "Sequences dropped unscored because their client closed its connection.",
         b.cancelled_sequences);
#ifdef __GLIBC__
  // The allocator's own account (every arena): what the process holds live, apart from what it
  // keeps free for reuse; RSS minus both is mapped files and stacks.
  const struct mallinfo2 m = mallinfo2();
  scalar("polar_heap_allocated_bytes", "gauge", "Bytes allocated with malloc and not yet freed.",
         static_cast<int64_t>(m.uordblks + m.hblkhd));
  scalar("polar_heap_free_bytes", "gauge", "Bytes the allocator holds free for reuse.",
         static_cast<int64_t>(m.fordblks));
#endif
  t += "# HELP polar_request_duration_seconds Latency of scoring requests (parse to response).\n";
  t += "# TYPE polar_request_duration_seconds histogram\n";
  int64_t cumulative = 0;
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    cumulative += latency_counts_[i];
    t += fmt::format("polar_request_duration_seconds_bucket{{le=\"{}\"}} {}\n", kLatencyBuckets[i],
                     cumulative);
  }
  t += fmt::format("polar_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n", latency_total_);
  t += fmt::format("polar_request_duration_seconds_sum {}\n", latency_sum_);
  t += fmt::format("polar_request_duration_seconds_count {}\n", latency_total_);
  return t;
}

}  // namespace polar::serve
