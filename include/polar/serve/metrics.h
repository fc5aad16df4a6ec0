// Server counters in the Prometheus text format (GET /metrics): requests by path and status,
// sequences and tokens scored, queue depth, batches, and a latency histogram of scoring requests.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "polar/serve/batcher.h"

namespace polar::serve {

class Metrics {
 public:
  // `path` is reduced to the known endpoints (anything else counts as "other").
  void count_request(const std::string& path, int status);
  void observe_latency(double seconds);
  std::string prometheus_text(const BatcherStats& batcher) const;

  static constexpr std::array<double, 12> kLatencyBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                          0.1,   0.25,   0.5,   1.0,  2.5,   10.0};

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::array<int64_t, kLatencyBuckets.size()> latency_counts_{};  // non-cumulative
  int64_t latency_total_ = 0;
  double latency_sum_ = 0;
};

}  // namespace polar::serve
