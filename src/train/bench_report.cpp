// `polar bench`'s results as text, the spec-peak MFU, and `--baseline`: a saved result read back
// and set beside this run.
#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/train/bench.h"

namespace polar {

using nlohmann::json;

namespace {

// One "  label   value" line, the values in one column.
std::string line(const std::string& label, const std::string& value) {
  return fmt::format("  {:<20}  {}\n", label, value);
}

// The MFU line against the data-sheet peak, or why there is none.
std::string spec_mfu_line(const BenchResult& r) {
  if (r.spec_peak_gflops > 0)
    return line(
        fmt::format("MFU (spec peak, {}, {:.1f} TFLOP/s)", r.spec_name, r.spec_peak_gflops / 1e3),
        fmt::format("{:.1f}%", 100.0 * r.mfu_spec));
  if (r.device_name == "cpu") return line("MFU (spec peak)", "no spec peak for the CPU");
  return line("MFU (spec peak)", "spec peak unknown for " + r.device_name);
}

const char* const kBenchFileHint = "expected the JSON that `polar bench --output` writes";

const json& required(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  POLAR_CHECK(it != j.end(), where, ": missing key \"", key, "\" (", kBenchFileHint, ")");
  return *it;
}

double read_number(const json& j, const char* key, const std::string& where) {
  const json& v = required(j, key, where);
  POLAR_CHECK(v.is_number(), where, ": key \"", key, "\": expected a number, got ", v.type_name());
  const double x = v.get<double>();
  POLAR_CHECK(std::isfinite(x) && x >= 0, where, ": key \"", key,
              "\": expected a number >= 0, got ", v.dump());
  return x;
}

int64_t read_integer(const json& j, const char* key, const std::string& where) {
  const json& v = required(j, key, where);
  POLAR_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0, where, ": key \"", key,
              "\": expected an integer >= 0, got ", v.dump());
  return v.get<int64_t>();
}

std::string read_string(const json& j, const char* key, const std::string& where) {
  const json& v = required(j, key, where);
  POLAR_CHECK(v.is_string(), where, ": key \"", key, "\": expected a string, got ", v.type_name());
  return v.get<std::string>();
}

// An optional string key: absent or null (no spec peak) reads as "".
std::string read_optional_string(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j.at(key).is_null()) return "";
  return read_string(j, key, where);
}

std::string ratio_text(double now, double old) {
  return old > 0 ? fmt::format("{:.3f}x", now / old) : "n/a";
}

// One metric: both values with `digits` decimals (-1: 4 significant digits) and new/old.
std::string row(const char* metric, double old, double now, int digits) {
  const auto text = [digits](double x) {
    return digits < 0 ? fmt::format("{:.4g}", x) : fmt::format("{:.{}f}", x, digits);
  };
  return fmt::format("  {:<28}{:>14}{:>14}{:>10}\n", metric, text(old), text(now),
                     ratio_text(now, old));
}

double tokens_per_peak_gflops(const BenchResult& r) {
  return r.peak_gflops > 0 ? r.tokens_per_s / r.peak_gflops : 0;
}

// One line per configuration field in which the runs differ; each names both values.
std::vector<std::string> config_differences(const BenchResult& run, const BenchResult& base) {
  std::vector<std::string> out;
  const auto differ = [&](const char* field, const std::string& old, const std::string& now) {
    if (old != now)
      out.push_back(
          fmt::format("WARNING: the runs differ in {}: baseline {}, this run {}", field, old, now));
  };
  differ("parameters", std::to_string(base.parameters), std::to_string(run.parameters));
  differ("tokens/step", std::to_string(base.tokens_per_step), std::to_string(run.tokens_per_step));
  differ("pairs/step", std::to_string(base.pairs_per_step), std::to_string(run.pairs_per_step));
  differ("device", base.device, run.device);
  // Files written before the name was recorded leave it empty: nothing to compare then.
  if (!base.device_name.empty() && !run.device_name.empty())
    differ("device name", base.device_name, run.device_name);
  differ("precision", base.precision, run.precision);
  return out;
}

}  // namespace

void set_spec_peak(BenchResult& r, bool on_gpu, MatmulPrecision precision) {
  r.spec_name.clear();
  r.spec_peak_gflops = r.mfu_spec = 0;
  if (!on_gpu) return;
  if (const std::optional<SpecPeak> spec = lookup_spec_peak(r.device_name, precision)) {
    r.spec_name = fmt::format("{} {}", spec->device, matmul_precision_name(precision));
    r.spec_peak_gflops = spec->gflops;
    r.mfu_spec = r.achieved_gflops / spec->gflops;
  }
}

std::string format_bench_result(const BenchResult& r, const std::string& config) {
  std::string out = fmt::format("bench {} ({} params, {} {}, {}):\n", config, r.parameters,
                                r.device, r.precision, r.device_name);
  out += line("pairs/s", fmt::format("{:.2f}  ({} pairs/step)", r.pairs_per_s, r.pairs_per_step));
  out += line("tokens/s", fmt::format("{:.0f}", r.tokens_per_s));
  out += line("ms/step", fmt::format("{:.1f}  ({} tokens/step; CPU time {:.1f} ms/step)",
                                     r.ms_per_step, r.tokens_per_step, r.cpu_ms_per_step));
  out += line("achieved", fmt::format("{:.2f} GFLOP/s", r.achieved_gflops));
  out += line("matmul peak", fmt::format("{:.2f} GFLOP/s  ({})", r.peak_gflops, r.peak_kind));
  out += line("MFU (measured peak)", fmt::format("{:.1f}%", 100.0 * r.mfu));
  out += spec_mfu_line(r);
  out += line("peak memory", fmt::format("{:.0f} MiB", r.peak_memory_mb));
  return out;
}

BenchResult BenchResult::from_json(const json& j, const std::string& where) {
  POLAR_CHECK(j.is_object(), where, ": expected a JSON object (", kBenchFileHint, "), got ",
              j.type_name());
  BenchResult r;
  r.device = read_string(j, "device", where);
  r.precision = read_string(j, "precision", where);
  r.parameters = read_integer(j, "parameters", where);
  r.tokens_per_step = read_integer(j, "tokens_per_step", where);
  r.pairs_per_step = read_integer(j, "pairs_per_step", where);
  r.tokens_per_s = read_number(j, "tokens_per_s", where);
  r.pairs_per_s = read_number(j, "pairs_per_s", where);
  r.ms_per_step = read_number(j, "ms_per_step", where);
  r.peak_gflops = read_number(j, "peak_gflops", where);
  r.device_name = read_optional_string(j, "device_name", where);
  r.spec_name = read_optional_string(j, "spec_name", where);
  return r;
}

BenchResult load_bench_result(const std::string& path) {
  return BenchResult::from_json(read_json_file(path), path);
}

std::string compare_bench_results(const BenchResult& run, const BenchResult& base,
                                  const std::string& baseline_name) {
  std::string out =
      fmt::format("compared with {} (ms/step: above 1x is slower; the rest: below 1x is slower):\n",
                  baseline_name);
  out += fmt::format("  {:<28}{:>14}{:>14}{:>10}\n", "", "baseline", "this run", "new/old");
  out += row("tokens/s", base.tokens_per_s, run.tokens_per_s, 1);
  out += row("pairs/s", base.pairs_per_s, run.pairs_per_s, 2);
  out += row("ms/step", base.ms_per_step, run.ms_per_step, 2);
  out += row("matmul peak GFLOP/s", base.peak_gflops, run.peak_gflops, 1);
  out += row("tokens/s per peak GFLOP/s", tokens_per_peak_gflops(base), tokens_per_peak_gflops(run),
             -1);
  const std::vector<std::string> differences = config_differences(run, base);
  for (const std::string& line : differences) out += line + "\n";
  if (!differences.empty())
    out +=
        "WARNING: the runs do different work; the ratios above are not a like-for-like "
        "comparison\n";
  return out;
}

}  // namespace polar
