// `polar bench`'s report: the spec-peak MFU and its lines, a saved result read back (bad files
// refused naming file and key) and the comparison of two runs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "common/tiny_data.h"
#include "polar/common/error.h"
#include "polar/train/bench.h"

using nlohmann::json;
using polar::BenchResult;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

BenchResult sample_result() {
  BenchResult r;
  r.device = "cuda:0";
  r.device_name = "NVIDIA H100 80GB HBM3";
  r.precision = "bf16";
  r.parameters = 1000;
  r.tokens_per_step = 4096;
  r.pairs_per_step = 16;
  r.tokens_per_s = 40000;
  r.pairs_per_s = 156.25;
  r.ms_per_step = 102.4;
  r.peak_gflops = 800000;
  r.mfu = 0.3;
  r.spec_name = "NVIDIA H100 SXM bf16";
  r.spec_peak_gflops = 989400;
  r.mfu_spec = 0.25;
  return r;
}

std::string error_of(const json& j) {
  try {
    BenchResult::from_json(j, "base.json");
  } catch (const polar::Error& e) {
    return e.what();
  }
  return "";
}

// The line of `text` that starts with `prefix`.
std::string line_of(const std::string& text, const std::string& prefix) {
  const size_t at = text.find("\n" + prefix);
  if (at == std::string::npos) return "";
  return text.substr(at + 1, text.find('\n', at + 1) - at - 1);
}

}  // namespace

TEST(BenchReport, JsonRoundTripKeepsWhatTheComparisonReads) {
  const BenchResult r = sample_result();
  const json j = r.to_json();
  EXPECT_EQ(j.at("spec_name"), "NVIDIA H100 SXM bf16");
  EXPECT_DOUBLE_EQ(j.at("spec_peak_gflops").get<double>(), 989400);
  EXPECT_DOUBLE_EQ(j.at("mfu_spec_peak").get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(j.at("mfu").get<double>(), 0.3);
  const BenchResult back = BenchResult::from_json(j, "x.json");
  EXPECT_EQ(back.device_name, r.device_name);
  EXPECT_EQ(back.parameters, r.parameters);
  EXPECT_EQ(back.pairs_per_step, r.pairs_per_step);
  EXPECT_DOUBLE_EQ(back.tokens_per_s, r.tokens_per_s);
  EXPECT_DOUBLE_EQ(back.peak_gflops, r.peak_gflops);
  // Without a spec peak the JSON says so with nulls, and still reads back.
  BenchResult cpu = sample_result();
  cpu.device = cpu.device_name = "cpu";
  cpu.spec_name.clear();
  cpu.spec_peak_gflops = cpu.mfu_spec = 0;
  const json cj = cpu.to_json();
  EXPECT_TRUE(cj.at("spec_peak_gflops").is_null());
  EXPECT_TRUE(cj.at("mfu_spec_peak").is_null());
  EXPECT_EQ(BenchResult::from_json(cj, "x.json").spec_name, "");
}

TEST(BenchReport, BadFilesNameFileAndKey) {
  json j = sample_result().to_json();
  j.erase("pairs_per_s");
  EXPECT_THAT(error_of(j), HasSubstr("base.json: missing key \"pairs_per_s\""));
  j = sample_result().to_json();
  j["tokens_per_s"] = "fast";
  EXPECT_THAT(error_of(j),
              HasSubstr("base.json: key \"tokens_per_s\": expected a number, got string"));
  j = sample_result().to_json();
  j["parameters"] = 1.5;
  EXPECT_THAT(error_of(j), HasSubstr("base.json: key \"parameters\": expected an integer"));
  EXPECT_THAT(error_of(json::array({1, 2})), HasSubstr("base.json: expected a JSON object"));
  // A file written before device_name existed is still a baseline.
  j = sample_result().to_json();
  j.erase("device_name");
  EXPECT_EQ(error_of(j), "");

  polar::testing::TempDir tmp;
  EXPECT_THROW(
      {
        try {
          polar::load_bench_result(tmp / "missing.json");
        } catch (const polar::Error& e) {
          EXPECT_THAT(e.what(), HasSubstr(tmp / "missing.json"));
          throw;
        }
      },
      polar::Error);
  std::ofstream(tmp / "bad.json") << "{not json";
  EXPECT_THROW(polar::load_bench_result(tmp / "bad.json"), polar::Error);
}

TEST(BenchReport, RatiosOfTheSameConfiguration) {
  const BenchResult old_run = sample_result();
  BenchResult run = sample_result();
  run.tokens_per_s = 30000;  // 0.75x
  run.pairs_per_s = 117.1875;
  run.ms_per_step = 136.53;
  run.peak_gflops = 600000;  // the device was slower too: per peak GFLOP/s unchanged
  const std::string text = polar::compare_bench_results(run, old_run, "base.json");
  EXPECT_THAT(text, HasSubstr("compared with base.json"));
  EXPECT_THAT(text, HasSubstr("40000.0"));
  EXPECT_THAT(text, HasSubstr("30000.0"));
  EXPECT_THAT(text, HasSubstr("0.750x"));  // tokens/s, pairs/s and the peak
  EXPECT_THAT(text, HasSubstr("1.333x"));  // ms/step
  EXPECT_THAT(line_of(text, "  tokens/s per peak GFLOP/s"), HasSubstr("0.05    1.000x"));
  EXPECT_THAT(text, Not(HasSubstr("WARNING")));
}

TEST(BenchReport, EveryDifferingConfigFieldIsNamedWithBothValues) {
  const BenchResult old_run = sample_result();
  BenchResult run = sample_result();
  run.parameters = 2000;
  run.tokens_per_step = 8192;
  run.device = "cpu";
  run.device_name = "cpu";
  run.precision = "fp32";
  const std::string text = polar::compare_bench_results(run, old_run, "base.json");
  EXPECT_THAT(text,
              HasSubstr("WARNING: the runs differ in parameters: baseline 1000, this run 2000"));
  EXPECT_THAT(text,
              HasSubstr("WARNING: the runs differ in tokens/step: baseline 4096, this run 8192"));
  EXPECT_THAT(text, HasSubstr("WARNING: the runs differ in device: baseline cuda:0, this run cpu"));
  EXPECT_THAT(text, HasSubstr("WARNING: the runs differ in device name: baseline NVIDIA H100 80GB "
                              "HBM3, this run cpu"));
  EXPECT_THAT(text,
              HasSubstr("WARNING: the runs differ in precision: baseline bf16, this run fp32"));
  EXPECT_THAT(text, Not(HasSubstr("differ in pairs/step")));
  EXPECT_THAT(text, HasSubstr("not a like-for-like comparison"));
  // The ratios are still printed.
  EXPECT_THAT(text, HasSubstr("1.000x"));
}

TEST(BenchReport, SpecPeakMfuOnAKnownGpu) {
  BenchResult r = sample_result();
  r.achieved_gflops = 494700;
  polar::set_spec_peak(r, /*on_gpu=*/true, polar::MatmulPrecision::Bf16);
  EXPECT_EQ(r.spec_name, "NVIDIA H100 SXM bf16");
  EXPECT_DOUBLE_EQ(r.spec_peak_gflops, 989400);
  EXPECT_DOUBLE_EQ(r.mfu_spec, 0.5);
  r.mfu = 0.6;
  const std::string text = polar::format_bench_result(r, "c.json");
  EXPECT_THAT(text, HasSubstr("  MFU (measured peak)   60.0%\n"));
  EXPECT_THAT(text, HasSubstr("  MFU (spec peak, NVIDIA H100 SXM bf16, 989.4 TFLOP/s)  50.0%\n"));
  // fp32 matmuls without TF32 are measured against the plain fp32 peak.
  polar::set_spec_peak(r, true, polar::MatmulPrecision::Fp32);
  EXPECT_EQ(r.spec_name, "NVIDIA H100 SXM fp32");
  EXPECT_DOUBLE_EQ(r.spec_peak_gflops, 66900);
}

TEST(BenchReport, NoSpecPeakOnTheCpuOrAnUnknownGpu) {
  BenchResult r = sample_result();
  r.device_name = "NVIDIA GeForce RTX 4090";
  polar::set_spec_peak(r, true, polar::MatmulPrecision::Bf16);
  EXPECT_EQ(r.spec_name, "");
  EXPECT_EQ(r.spec_peak_gflops, 0);
  EXPECT_EQ(r.mfu_spec, 0);
  EXPECT_THAT(polar::format_bench_result(r, "c.json"),
              HasSubstr("  MFU (spec peak)       spec peak unknown for NVIDIA GeForce RTX 4090\n"));
  EXPECT_TRUE(r.to_json().at("spec_peak_gflops").is_null());
  r.device = r.device_name = "cpu";
  polar::set_spec_peak(r, false, polar::MatmulPrecision::Fp32);
  EXPECT_EQ(r.spec_peak_gflops, 0);
  const std::string text = polar::format_bench_result(r, "c.json");
  EXPECT_THAT(text, HasSubstr("  MFU (spec peak)       no spec peak for the CPU\n"));
  EXPECT_THAT(text, HasSubstr("  MFU (measured peak)   30.0%\n"));
}
