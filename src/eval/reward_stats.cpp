// Reward statistics stored with a checkpoint; see eval/reward_stats.h.
#include "polar/eval/reward_stats.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "polar/common/error.h"
#include "polar/common/json_config.h"

namespace polar {

namespace {

constexpr const char* kFile = "reward_stats.json";

std::string stats_path(const std::string& checkpoint) {
  return (std::filesystem::path(checkpoint) / kFile).string();
}

}  // namespace

RewardStats compute_reward_stats(const std::vector<double>& rewards, const std::string& data) {
  RewardStats s;
  s.data = data;
  double sum = 0;
  for (double r : rewards) {
    if (!std::isfinite(r)) continue;
    sum += r;
    ++s.count;
  }
  POLAR_CHECK(s.count > 0, data, ": no rewards to compute statistics of");
  s.mean = sum / static_cast<double>(s.count);
  double squares = 0;
  for (double r : rewards) {
    if (std::isfinite(r)) squares += (r - s.mean) * (r - s.mean);
  }
  s.std = std::sqrt(squares / static_cast<double>(s.count));
  POLAR_CHECK(s.std > 0, data, ": every reward is ", s.mean, "; a std of 0 cannot normalise");
  return s;
}

void save_reward_stats(const std::string& checkpoint, const RewardStats& stats) {
  write_json_file_atomic(stats_path(checkpoint), {{"format", "polar-reward-stats-v1"},
                                                  {"mean", stats.mean},
                                                  {"std", stats.std},
                                                  {"count", stats.count},
                                                  {"data", stats.data}});
}

RewardStats load_reward_stats(const std::string& checkpoint) {
  const std::string path = stats_path(checkpoint);
  POLAR_CHECK(std::filesystem::exists(path), checkpoint, ": no ", kFile,
              " (reward mean and std for --normalize); write it with `polar eval --checkpoint ",
              checkpoint, " --data EVAL.jsonl --save-stats`");
  const auto j = read_json_file(path);
  ConfigReader r(j, path);
  std::string format;
  RewardStats s;
  r.get("format", format);
  r.get("mean", s.mean);
  r.get("std", s.std);
  r.get("count", s.count);
  r.get("data", s.data);
  r.finish();
  POLAR_CHECK(format == "polar-reward-stats-v1", path,
              ".format: expected \"polar-reward-stats-v1\", got \"", format, "\"");
  POLAR_CHECK(std::isfinite(s.mean) && std::isfinite(s.std) && s.std > 0, path,
              ": expected a finite mean and a std > 0, got ", s.mean, " and ", s.std);
  return s;
}

}  // namespace polar
