// Whether the CUDA kernels can run in this process: compiled in (POLAR_WITH_CUDA) and a CUDA
// device present. Each operation's entry point asks this before taking its kernel.
#pragma once

namespace polar::kernels {

bool cuda_kernels_available();

}  // namespace polar::kernels
