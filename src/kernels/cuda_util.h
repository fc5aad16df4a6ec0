// Helpers for the .cpp wrappers of the CUDA kernels: the current stream and error checks.
// Included only when the kernels are compiled in (POLAR_WITH_CUDA).
#pragma once

#ifdef POLAR_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "launch.h"
#include "polar/common/error.h"

namespace polar::kernels::cuda {

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

inline void check(cudaError_t err, const char* what) {
  POLAR_CHECK(err == cudaSuccess, what, ": CUDA error: ", cudaGetErrorString(err));
}

}  // namespace polar::kernels::cuda
#endif
