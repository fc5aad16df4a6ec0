#include "profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <vector>

namespace polar {

namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

std::string profile_step(const std::function<void()>& step, const std::string& trace_path,
                         bool cuda, int top) {
  const ProfilerConfig config(ProfilerState::KINETO);
  std::set<ActivityType> activities{ActivityType::CPU};
  if (cuda) activities.insert(ActivityType::CUDA);
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  try {
    step();
  } catch (...) {
    prof::disableProfiler();
    throw;
  }
  const auto result = prof::disableProfiler();
  result->save(trace_path);

  // Device kernels have no children, so their durations add up; CPU ops nest, so only the
  // CPU table's self-contained top level would add up: there the share is of the step's span.
  struct Total {
    double us = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Total> totals;
  double all_us = 0;
  uint64_t first = UINT64_MAX, last = 0;
  const c10::DeviceType want = cuda ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  for (const auto& e : result->events()) {
    if (e.deviceType() != want) continue;
    const double us = static_cast<double>(e.durationNs()) / 1e3;
    Total& t = totals[e.name()];
    t.us += us;
    ++t.calls;
    all_us += us;
    first = std::min<uint64_t>(first, e.startNs());
    last = std::max<uint64_t>(last, e.endNs());
  }
  std::vector<std::pair<std::string, Total>> rows(totals.begin(), totals.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.us > b.second.us; });
  const double span_us = last > first ? static_cast<double>(last - first) / 1e3 : 0;
  const double denom = cuda ? all_us : span_us;
  std::string out = fmt::format("profile ({}): {:.1f} ms of {} in a {:.1f} ms span; trace {}\n",
                                cuda ? "CUDA kernels" : "CPU ops", all_us / 1e3,
                                cuda ? "kernel time" : "op time", span_us / 1e3, trace_path);
  out += fmt::format("{:>9} {:>7} {:>7}  {}\n", "ms", "share", "calls", "name");
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < top; ++i) {
    const auto& [name, t] = rows[i];
    out += fmt::format("{:9.2f} {:6.1f}% {:7}  {}\n", t.us / 1e3,
                       denom > 0 ? 100.0 * t.us / denom : 0.0, t.calls, name.substr(0, 140));
  }
  return out;
}

}  // namespace polar
