// The "are the kernels usable here" probe (see polar/kernels/cuda.h).
#include "polar/kernels/cuda.h"

#ifdef POLAR_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace polar::kernels {

bool cuda_kernels_available() {
#ifdef POLAR_WITH_CUDA
  static const bool available = c10::cuda::device_count() > 0;
  return available;
#else
  return false;
#endif
}

}  // namespace polar::kernels
