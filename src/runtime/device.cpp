#include "polar/runtime/device.h"

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>

#include "polar/common/error.h"

namespace polar {

torch::Device resolve_device(const std::string& name, int local_rank) {
  if (name == "cpu") return torch::kCPU;
  if (name == "auto" && !torch::cuda::is_available()) return torch::kCPU;
  POLAR_CHECK(torch::cuda::is_available(), "train.device = ", name,
              " but no CUDA device is available");
  if (name.rfind("cuda:", 0) == 0) return torch::Device(name);
  return torch::Device(torch::kCUDA,
                       static_cast<c10::DeviceIndex>(local_rank % torch::cuda::device_count()));
}

PackedBatch to_device(PackedBatch b, const torch::Device& device) {
  if (device.is_cpu()) return b;
  // The packer's one buffer moves in one copy; every tensor becomes the same view of it there.
  if (b.storage.defined()) return with_storage(b, b.storage.to(device, /*non_blocking=*/true));
  for (torch::Tensor* t : index_tensors(b))
    if (t->defined()) *t = t->to(device, /*non_blocking=*/true);
  return b;
}

PackedBatch with_storage(PackedBatch b, const torch::Tensor& copy) {
  POLAR_CHECK(
      b.storage.defined() && copy.sizes() == b.storage.sizes() &&
          copy.scalar_type() == torch::kInt64 && copy.is_contiguous(),
      "with_storage: the copy must be a contiguous int64 tensor shaped as the batch's storage ",
      b.storage.sizes());
  const int64_t base = b.storage.storage_offset();
  for (torch::Tensor* t : index_tensors(b)) {
    if (!t->defined()) continue;
    if (t->is_alias_of(b.storage)) {
      *t = copy.as_strided(t->sizes(), t->strides(),
                           copy.storage_offset() + t->storage_offset() - base);
    } else {  // replaced after packing
      *t = t->to(copy.device(), /*non_blocking=*/true);
    }
  }
  b.storage = copy;
  return b;
}

std::shared_ptr<void> autocast_guard(Precision precision, const torch::Device& device) {
  if (precision != Precision::Bf16 || !device.is_cuda()) return nullptr;
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
