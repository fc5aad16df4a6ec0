// Dense (non-sparse) peak matmul throughput from the vendors' data sheets, so `polar bench` can
// quote MFU against the number a reader compares with, beside the peak it measures itself.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace polar {

// The tensor-core precision a matmul runs in (fp32 training runs tf32 only when TF32 is enabled).
enum class MatmulPrecision { Bf16, Fp16, Tf32, Fp32 };

const char* matmul_precision_name(MatmulPrecision precision);

struct SpecPeak {
  std::string device;  // the table's name for the device, e.g. "NVIDIA H100 SXM"
  double gflops = 0;   // dense peak in GFLOP/s
};

// The spec peak of the device whose CUDA name is `device_name` ("NVIDIA H100 80GB HBM3",
// "NVIDIA A100-SXM4-80GB", ...), matched case-insensitively by substring; nullopt for a device
// the table does not cover (including variants such as H100 NVL whose peaks differ).
std::optional<SpecPeak> lookup_spec_peak(std::string_view device_name, MatmulPrecision precision);

}  // namespace polar
