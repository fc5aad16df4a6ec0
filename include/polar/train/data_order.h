// The order in which training reads groups: an endless stream of epochs, each a seeded
// permutation of the split. Step s of a run with B groups per step takes stream positions
// [s*B, (s+1)*B); rank r of W takes the positions p with (p - s*B) % W == r. The order is a
// function of (seed, position) only, so a run resumes exactly on any number of ranks.
#pragma once

#include <cstdint>
#include <vector>

namespace polar {

class GroupStream {
 public:
  GroupStream(int64_t n_groups, uint64_t seed);
  int64_t at(int64_t position);  // group index at a stream position
  // Group indices of step `step` for `rank` of `world_size`.
  std::vector<int64_t> step_groups(int64_t step, int64_t batch_groups, int rank, int world_size);

 private:
  int64_t n_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

// `k` distinct indices drawn uniformly from [0, n) (all of them when k <= 0 or k >= n), sorted; a
// function of (n, k, seed) only, so every rank and every eval of a run sees the same sample.
std::vector<int64_t> sample_indices(int64_t n, int64_t k, uint64_t seed);

// Optimizer steps for `epochs` passes over `n_groups` groups at `batch_groups` per step (rounded
// up).
int64_t steps_for_epochs(double epochs, int64_t n_groups, int64_t batch_groups);

}  // namespace polar
