#include "polar/train/data_order.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "polar/common/error.h"

namespace polar {

GroupStream::GroupStream(int64_t n_groups, uint64_t seed) : n_(n_groups), seed_(seed) {
  POLAR_CHECK(n_groups > 0, "the training split has no groups");
}

int64_t GroupStream::at(int64_t position) {
  int64_t epoch = position / n_;
  if (epoch != epoch_) {
    perm_.resize(static_cast<size_t>(n_));
    std::iota(perm_.begin(), perm_.end(), 0);
    // Fisher-Yates with our own draws: std::shuffle's algorithm is implementation-defined.
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 1);
    for (int64_t i = n_ - 1; i > 0; --i) {
      int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
      std::swap(perm_[i], perm_[j]);
    }
    epoch_ = epoch;
  }
  return perm_[static_cast<size_t>(position % n_)];
}

std::vector<int64_t> GroupStream::step_groups(int64_t step, int64_t batch_groups, int rank,
                                              int world_size) {
  std::vector<int64_t> out;
  for (int64_t k = rank; k < batch_groups; k += world_size)
    out.push_back(at(step * batch_groups + k));
  return out;
}

std::vector<int64_t> sample_indices(int64_t n, int64_t k, uint64_t seed) {
  POLAR_CHECK(n >= 0, "sample_indices: negative n");
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  if (k <= 0 || k >= n) return all;
  // Partial Fisher-Yates with our own draws (std::shuffle's algorithm is implementation-defined).
  std::mt19937_64 rng(seed * 0xD1B54A32D192ED03ULL + 0x5EED);
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng() % static_cast<uint64_t>(n - i));
    std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(j)]);
  }
  all.resize(static_cast<size_t>(k));
  std::sort(all.begin(), all.end());
  return all;
}

int64_t steps_for_epochs(double epochs, int64_t n_groups, int64_t batch_groups) {
  POLAR_CHECK(epochs > 0 && std::isfinite(epochs), "train.epochs: must be a positive number, got ",
              epochs);
  POLAR_CHECK(n_groups > 0 && batch_groups > 0, "steps_for_epochs: no groups");
  const double steps =
      std::ceil(epochs * static_cast<double>(n_groups) / static_cast<double>(batch_groups) - 1e-9);
  return std::max<int64_t>(1, static_cast<int64_t>(steps));
}

}  // namespace polar
