// The spec-peak table: dense tensor-core peaks in TFLOP/s from NVIDIA's data sheets (the sparse
// figures the sheets print first are twice these).
#include "polar/train/spec_peak.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace polar {

namespace {

struct SpecRow {
  const char* pattern;  // substring of the CUDA device name, matched case-insensitively
  const char* device;   // nullptr: a known variant whose peaks this table does not give
  double bf16_fp16, tf32, fp32;
};

// First match wins, so a variant comes before the family name it contains ("H100 PCIe" before
// "H100"; "GH200" and the NVL cards, whose peaks differ, before "H200"/"H100").
constexpr std::array<SpecRow, 8> kSpecTable{{
    {"H100 NVL", nullptr, 0, 0, 0},
    {"H200 NVL", nullptr, 0, 0, 0},
    {"GH200", nullptr, 0, 0, 0},
    {"H100 PCIe", "NVIDIA H100 PCIe", 756, 378, 51},
    {"H100", "NVIDIA H100 SXM", 989.4, 494.7, 66.9},
    {"H200", "NVIDIA H200", 989.4, 494.7, 66.9},
    {"A100", "NVIDIA A100", 312, 156, 19.5},
    {"L40S", "NVIDIA L40S", 362.05, 183, 91.6},
}};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

double row_tflops(const SpecRow& row, MatmulPrecision precision) {
  switch (precision) {
    case MatmulPrecision::Bf16:
    case MatmulPrecision::Fp16:
      return row.bf16_fp16;
    case MatmulPrecision::Tf32:
      return row.tf32;
    case MatmulPrecision::Fp32:
      return row.fp32;
  }
  return 0;
}

}  // namespace

const char* matmul_precision_name(MatmulPrecision precision) {
  switch (precision) {
    case MatmulPrecision::Bf16:
      return "bf16";
    case MatmulPrecision::Fp16:
      return "fp16";
    case MatmulPrecision::Tf32:
      return "tf32";
    case MatmulPrecision::Fp32:
      return "fp32";
  }
  return "?";
}

std::optional<SpecPeak> lookup_spec_peak(std::string_view device_name, MatmulPrecision precision) {
  const std::string name = lower(device_name);
  for (const SpecRow& row : kSpecTable) {
    if (name.find(lower(row.pattern)) == std::string::npos) continue;
    if (row.device == nullptr) return std::nullopt;
    return SpecPeak{row.device, 1000.0 * row_tflops(row, precision)};
  }
  return std::nullopt;
}

}  // namespace polar
