// Precision: the floating-point type of a computation or of stored weights, as configs and
// flags spell it ("fp32", "bf16").
#pragma once

#include "polar/common/config_schema.h"

namespace polar {

// clang-format off
#define POLAR_PRECISION_CHOICES(X) \
  X(Fp32, "fp32", "32-bit floats") \
  X(Bf16, "bf16", "bfloat16 (CUDA); fp32 master weights and loss")
// clang-format on
POLAR_CONFIG_ENUM(Precision, POLAR_PRECISION_CHOICES)

}  // namespace polar
