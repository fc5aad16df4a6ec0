// One step under LibTorch's Kineto profiler, for `polar bench --profile`.
#pragma once

#include <functional>
#include <string>

namespace polar {

// Runs `step` with the profiler on (CPU ops, and CUDA kernels when `cuda`), writes a Chrome
// trace (chrome://tracing, Perfetto) to `trace_path` and returns a table of the `top` kernels (or
// CPU ops without CUDA) by total time, with their share of the whole.
std::string profile_step(const std::function<void()>& step, const std::string& trace_path,
                         bool cuda, int top);

}  // namespace polar
