// The mean and standard deviation of a reward model's rewards on an eval split, stored beside
// its weights (CHECKPOINT/reward_stats.json) by `polar eval --save-stats`, so that `polar score
// --normalize` and `polar serve --normalize` can give RL rewards of mean 0 and std 1 on that
// split (as OpenRLHF normalises a served reward model with its eval split's statistics).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace polar {

struct RewardStats {
  double mean = 0, std = 1;  // population standard deviation
  int64_t count = 0;
  std::string data;  // the file they were computed on
  double normalize(double reward) const { return (reward - mean) / std; }
};

// From finite rewards (NaN ones, too long to score, are left out); throws when none remain or
// they are all equal (std 0).
RewardStats compute_reward_stats(const std::vector<double>& rewards, const std::string& data);
void save_reward_stats(const std::string& checkpoint, const RewardStats& stats);
// Throws naming the file and `polar eval --save-stats` when the checkpoint has none.
RewardStats load_reward_stats(const std::string& checkpoint);

}  // namespace polar
