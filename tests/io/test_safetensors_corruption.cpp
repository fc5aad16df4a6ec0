// Runs the seeded corruption campaign (tests/io/safetensors_corruption.cpp) on the parser: every
// mutated image must parse to a valid tiling or raise polar::Error, and the campaign must reach
// every validation rule. scripts/asan_safetensors.sh runs the same driver under ASan/UBSan.
#include <gtest/gtest.h>

#include <chrono>

#include "safetensors_corruption.h"

namespace polar::io {
namespace {

TEST(SafetensorsCorruption, TenThousandMutationsParseOrFailCleanly) {
  const auto start = std::chrono::steady_clock::now();
  const testing::CampaignResult r =
      testing::run_corruption_campaign(/*seed=*/20250705, /*n_files=*/12000);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (size_t i = 0; i < r.failures.size() && i < 20; ++i) ADD_FAILURE() << r.failures[i];
  EXPECT_TRUE(r.failures.empty()) << r.failures.size() << " failures";
  EXPECT_EQ(r.mutations, 12000u);
  EXPECT_EQ(r.accepted + r.rejected, r.mutations);
  EXPECT_GT(r.accepted, 500u) << "harmless mutations (data flips, re-encoded whitespace) must pass";
  EXPECT_GT(r.rejected, 5000u);
  EXPECT_GE(r.base_labels.size(), 7u);
  // Every rule is reached, and no message falls outside the known classes.
  for (const std::string& cls : testing::corruption_error_classes())
    EXPECT_GT(r.by_error.count(cls) ? r.by_error.at(cls) : 0, 0u) << "no mutation reached: " << cls;
  EXPECT_EQ(r.by_error.count("other"), 0u);
  EXPECT_GE(r.by_kind.size(), 20u);
  RecordProperty("seconds", std::to_string(seconds));
  std::printf("[campaign] %llu mutations (%llu accepted, %llu rejected) in %.2f s\n",
              static_cast<unsigned long long>(r.mutations),
              static_cast<unsigned long long>(r.accepted),
              static_cast<unsigned long long>(r.rejected), seconds);
}

TEST(SafetensorsCorruption, IsDeterministicInTheSeed) {
  const auto a = testing::run_corruption_campaign(7, 500),
             b = testing::run_corruption_campaign(7, 500);
  EXPECT_EQ(a.accepted, b.accepted);
  EXPECT_EQ(a.by_kind, b.by_kind);
  EXPECT_EQ(a.by_error, b.by_error);
  const auto c = testing::run_corruption_campaign(8, 500);
  EXPECT_NE(a.by_kind, c.by_kind);
}

}  // namespace
}  // namespace polar::io
