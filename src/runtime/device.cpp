#include "polar/runtime/device.h"

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>

#include "polar/common/error.h"

namespace polar {

torch::Device resolve_device(const std::string& name, int local_rank) {
  if (name == "cpu") return torch::kCPU;
  if (name == "auto" && !torch::cuda::is_available()) return torch::kCPU;
  POLAR_CHECK(torch::cuda::is_available(), "train.device = ", name, " but no CUDA device is available");
  if (name.rfind("cuda:", 0) == 0) return torch::Device(name);
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % torch::cuda::device_count()));
}

PackedBatch to_device(PackedBatch b, const torch::Device& device) {
  if (device.is_cpu()) return b;
  for (torch::Tensor* t : {&b.tokens, &b.positions, &b.segments, &b.context, &b.reward_index, &b.pair_pos, &b.pair_neg})
    if (t->defined()) *t = t->to(device, /*non_blocking=*/true);
  return b;
}

std::shared_ptr<void> autocast_guard(const std::string& precision, const torch::Device& device) {
  if (precision != "bf16" || !device.is_cuda()) return nullptr;
  bool prev = at::autocast::is_autocast_enabled(at::kCUDA);
  at::ScalarType prev_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  return std::shared_ptr<void>(nullptr, [prev, prev_dtype](void*) {
    at::autocast::set_autocast_enabled(at::kCUDA, prev);
    at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype);
    at::autocast::clear_cache();
  });
}

}  // namespace polar
