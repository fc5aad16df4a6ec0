// Loss normalisation by the global pair count: one micro-batch of 8 pairs gives the same loss
// and gradients as several micro-batches (packed differently) accumulated, through the model.
#include <gtest/gtest.h>

#include <cmath>

#include "../model/tiny_model.h"
#include "polar/data/batch.h"
#include "polar/loss/polar_loss.h"
#include "polar/model/reward_model.h"

namespace polar {
namespace {

using testutil::GroupBuilder;
using torch::Tensor;
using Ranges = std::vector<std::pair<int64_t, int64_t>>;

struct Precision {
  torch::Dtype dtype;
  double init_std;
  double tolerance;  // on the gradient difference relative to the gradient (norm over all)
};
// fp32 at the default init: rewards O(0.1), rounding noise ~3e-7 relative.
const Precision kFloat{torch::kFloat, 0.02, 1e-6};
// double with larger weights (a sharper, less linear model): only rounding remains.
const Precision kDouble{torch::kDouble, 0.15, 1e-11};

struct StepResult {
  double loss = 0;
  int64_t pairs = 0;
  std::vector<Tensor> grads;
};

StepResult accumulate(const GroupBuilder& builder, const Ranges& ranges, int64_t row_tokens,
                      double global_pairs, const Precision& precision) {
  RewardModel model = testutil::tiny_model(testutil::tiny_config(2, true), 7, precision.init_std);
  model->to(precision.dtype);
  StepResult out;
  for (const auto& [begin, end] : ranges) {
    const PackedBatch batch = pack_groups(builder.slice(begin, end), {row_tokens, 0});
    const PairLoss loss = pair_loss_reference(model->forward(batch), batch.pair_pos, batch.pair_neg,
                                              global_pairs, {});
    loss.loss.backward();
    out.loss += loss.loss.item<double>();
    out.pairs += loss.n_pairs;
  }
  out.grads = testutil::gradients(model);
  return out;
}

// ||a - b|| / ||a|| over all parameters together, and every parameter tensor has a gradient.
double relative_difference(const StepResult& a, const StepResult& b) {
  EXPECT_EQ(a.grads.size(), b.grads.size());
  double diff_sq = 0, norm_sq = 0;
  for (size_t i = 0; i < a.grads.size(); ++i) {
    const double norm = a.grads[i].norm().item<double>();
    EXPECT_GT(norm, 0) << "parameter " << i << " has no gradient";
    diff_sq += std::pow((a.grads[i] - b.grads[i]).norm().item<double>(), 2);
    norm_sq += norm * norm;
  }
  return std::sqrt(diff_sq / norm_sq);
}

TEST(GradAccumulation, EightPairsOneOrFourMicroBatches) {
  GroupBuilder builder(31);
  const int64_t lens[8][2] = {{6, 4}, {9, 2}, {3, 11}, {5, 5}, {2, 8}, {7, 1}, {4, 6}, {10, 3}};
  for (int g = 0; g < 8; ++g) builder.add_random(5 + g, {lens[g][0], lens[g][1]}, 0);
  const Ranges four_ranges = {{0, 2}, {2, 4}, {4, 6}, {6, 8}};
  for (const Precision& precision : {kFloat, kDouble}) {
    const StepResult one = accumulate(builder, {{0, 8}}, 48, 8.0, precision);
    const StepResult four = accumulate(builder, four_ranges, 24, 8.0, precision);
    EXPECT_EQ(one.pairs, 8);
    EXPECT_EQ(four.pairs, 8);
    EXPECT_NEAR(one.loss, four.loss, precision.tolerance * one.loss);
    EXPECT_LE(relative_difference(one, four), precision.tolerance) << "dtype " << precision.dtype;
  }
  // Dividing by each micro-batch's own count would scale everything by 4: the check can fail.
  const StepResult one = accumulate(builder, {{0, 8}}, 48, 8.0, kFloat);
  const StepResult local = accumulate(builder, four_ranges, 24, 2.0, kFloat);
  EXPECT_NEAR(local.loss, 4 * one.loss, 1e-5 * local.loss);
  EXPECT_GT(relative_difference(one, local), 1.0);
}

TEST(GradAccumulation, GroupsWithSeveralNegativesSplitByBudget) {
  GroupBuilder builder(37);
  builder.add_random(8, {3, 5, 2}, 0);  // 3 candidates: 2 pairs
  builder.add_random(4, {6, 1}, 0);
  builder.add_random(12, {2, 2, 7, 4}, 0);  // 3 pairs
  builder.add_random(3, {9, 5}, 0);
  int64_t total = 0;
  for (const GroupRef& g : builder.groups()) total += g.total_tokens();
  const Ranges ranges = split_micro_batches(builder.groups(), 40);
  ASSERT_GT(ranges.size(), 1u);
  for (const Precision& precision : {kFloat, kDouble}) {
    const StepResult whole = accumulate(builder, {{0, 4}}, total, 7.0, precision);
    const StepResult split = accumulate(builder, ranges, 16, 7.0, precision);
    EXPECT_EQ(whole.pairs, 7);
    EXPECT_EQ(split.pairs, 7);
    EXPECT_LE(relative_difference(whole, split), precision.tolerance)
        << "dtype " << precision.dtype;
  }
}

}  // namespace
}  // namespace polar
