// The spec-peak table: CUDA device names as drivers report them, matched to dense data-sheet peaks.
#include <gtest/gtest.h>

#include "polar/train/spec_peak.h"

using polar::lookup_spec_peak;
using polar::MatmulPrecision;

namespace {

// The dense peak in TFLOP/s, or -1 where the table has none.
double tflops(const char* name, MatmulPrecision precision) {
  const auto spec = lookup_spec_peak(name, precision);
  return spec ? spec->gflops / 1000.0 : -1;
}

std::string device(const char* name) {
  const auto spec = lookup_spec_peak(name, MatmulPrecision::Bf16);
  return spec ? spec->device : "";
}

}  // namespace

TEST(SpecPeak, H100VariantsByName) {
  // The SXM card reports its memory, not "SXM".
  EXPECT_EQ(device("NVIDIA H100 80GB HBM3"), "NVIDIA H100 SXM");
  EXPECT_DOUBLE_EQ(tflops("NVIDIA H100 80GB HBM3", MatmulPrecision::Bf16), 989.4);
  EXPECT_DOUBLE_EQ(tflops("NVIDIA H100 80GB HBM3", MatmulPrecision::Fp16), 989.4);
  EXPECT_DOUBLE_EQ(tflops("NVIDIA H100 80GB HBM3", MatmulPrecision::Tf32), 494.7);
  EXPECT_DOUBLE_EQ(tflops("NVIDIA H100 80GB HBM3", MatmulPrecision::Fp32), 66.9);
  EXPECT_EQ(device("NVIDIA H100 PCIe"), "NVIDIA H100 PCIe");
  EXPECT_DOUBLE_EQ(tflops("NVIDIA H100 PCIe", MatmulPrecision::Bf16), 756);
  EXPECT_DOUBLE_EQ(tflops("NVIDIA H100 PCIe", MatmulPrecision::Tf32), 378);
  EXPECT_DOUBLE_EQ(tflops("NVIDIA H100 PCIe", MatmulPrecision::Fp32), 51);
  EXPECT_DOUBLE_EQ(tflops("nvidia h100 pcie", MatmulPrecision::Bf16), 756);  // any case
}

TEST(SpecPeak, H200A100L40S) {
  EXPECT_EQ(device("NVIDIA H200"), "NVIDIA H200");
  EXPECT_DOUBLE_EQ(tflops("NVIDIA H200", MatmulPrecision::Bf16), 989.4);
  EXPECT_DOUBLE_EQ(tflops("NVIDIA H200", MatmulPrecision::Fp32), 66.9);
  for (const char* a100 :
       {"NVIDIA A100-SXM4-80GB", "NVIDIA A100-PCIE-40GB", "NVIDIA A100 80GB PCIe"}) {
    EXPECT_EQ(device(a100), "NVIDIA A100") << a100;
    EXPECT_DOUBLE_EQ(tflops(a100, MatmulPrecision::Bf16), 312) << a100;
    EXPECT_DOUBLE_EQ(tflops(a100, MatmulPrecision::Tf32), 156) << a100;
    EXPECT_DOUBLE_EQ(tflops(a100, MatmulPrecision::Fp32), 19.5) << a100;
  }
  EXPECT_DOUBLE_EQ(tflops("NVIDIA L40S", MatmulPrecision::Fp16), 362.05);
  EXPECT_DOUBLE_EQ(tflops("NVIDIA L40S", MatmulPrecision::Tf32), 183);
  EXPECT_DOUBLE_EQ(tflops("NVIDIA L40S", MatmulPrecision::Fp32), 91.6);
}

TEST(SpecPeak, UnknownDevicesHaveNoPeak) {
  // Variants whose peaks differ from the family's are not given the family's numbers.
  for (const char* name : {"NVIDIA H100 NVL", "NVIDIA H200 NVL", "NVIDIA GH200 480GB", "NVIDIA L40",
                           "NVIDIA GeForce RTX 4090", "cpu", ""}) {
    EXPECT_FALSE(lookup_spec_peak(name, MatmulPrecision::Bf16).has_value()) << name;
  }
  EXPECT_STREQ(polar::matmul_precision_name(MatmulPrecision::Tf32), "tf32");
}
