// The kernel benchmark harness, run as a CPU dry run (tiny sizes, numbers meaningless): every
// section is produced, so the GPU run of scripts/device/check.sh does not fail on harness bugs.
#include <gtest/gtest.h>

#include <string>

#include "polar/kernels/bench.h"

namespace polar::kernels {
namespace {

TEST(KernelBench, CpuDryRunWritesEveryTable) {
  KernelBenchOptions o;
  o.cpu_dry_run = true;
  o.warmup = 0;
  o.reps = 1;
  const std::string md = run_kernel_bench(o);
  for (const char* want :
       {"## Ceilings", "device-to-device copy", "bf16 matmul", "## Reward head", "| forward |",
        "| fwd+bwd |", "## Grouped pair loss", "| 17 x 3 | 51 |", "Varlen"}) {
    EXPECT_NE(md.find(want), std::string::npos) << want << "\n" << md;
  }
}

}  // namespace
}  // namespace polar::kernels
