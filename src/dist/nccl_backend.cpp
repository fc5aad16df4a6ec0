// c10d::ProcessGroupNCCL for CUDA tensors. Compiled whenever the LibTorch is CUDA-enabled
// (USE_C10D_NCCL, set by torch's CMake targets) and nccl.h is on the include path; elsewhere the
// factory throws a clear error.
#if defined(USE_C10D_NCCL) && \
    __has_include(<nccl.h>) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>)
#define POLAR_DIST_HAVE_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "backends.h"
#include "polar/common/error.h"

namespace polar::dist::detail {

#ifdef POLAR_DIST_HAVE_NCCL

bool nccl_available() { return true; }

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    std::chrono::milliseconds timeout,
                                                    int device_index) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  // The watchdog aborts a collective that runs past this and reports it (with its sequence
  // number and op type) instead of hanging.
  options->timeout = timeout;
  auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
  // Binding the device lets NCCL create its communicator eagerly for exactly this GPU.
  pg->setBoundDeviceId(
      c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device_index)));
  return pg;
}

#else

bool nccl_available() { return false; }

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>&, int,
                                                    int, std::chrono::milliseconds, int) {
  throw polar::Error(
      "this build of polar has no NCCL support (it needs a CUDA LibTorch and nccl.h when it is "
      "compiled); "
      "train on CPU (Gloo) or rebuild against a CUDA LibTorch");
}

#endif

}  // namespace polar::dist::detail
