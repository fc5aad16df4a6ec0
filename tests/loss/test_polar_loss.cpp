// pair_loss_reference: values by hand, margin and centering, accuracy and ties, stability at large
// reward gaps, dtypes, and gradients against finite differences in double.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "polar/common/error.h"
#include "polar/loss/polar_loss.h"

namespace polar {
namespace {

using torch::Tensor;

Tensor i64(std::vector<int64_t> v) { return torch::tensor(v, torch::kInt64); }
double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

// rewards 1.0 0.5 -0.25 2.0 0.5; pairs (0,1) (0,2) (3,0) (1,4) (2,3):
// gaps 0.5, 1.25, 1.0, 0 (a tie), -2.25 (wrong).
const std::vector<double> kRewards = {1.0, 0.5, -0.25, 2.0, 0.5};
const std::vector<int64_t> kPos = {0, 0, 3, 1, 2}, kNeg = {1, 2, 0, 4, 3};

TEST(PolarLoss, ValueByHand) {
  const Tensor rewards = torch::tensor(kRewards, torch::kDouble);
  const PairLoss out = pair_loss_reference(rewards, i64(kPos), i64(kNeg), 10.0, {});
  double sum = 0;
  for (double gap : {0.5, 1.25, 1.0, 0.0, -2.25}) sum += softplus(-gap);  // -log sigmoid(gap)
  EXPECT_NEAR(out.loss_sum(), sum, 1e-12);
  EXPECT_NEAR(out.loss.item<double>(), sum / 10.0, 1e-12);  // divided by the global count, not 5
  EXPECT_EQ(out.n_pairs, 5);
  EXPECT_EQ(out.n_correct(), 3);
  EXPECT_EQ(out.n_ties(), 1);
  EXPECT_NEAR(softplus(-0.0), std::log(2.0), 1e-15);
}

TEST(PolarLoss, MarginAndCentering) {
  const Tensor rewards = torch::tensor(kRewards, torch::kDouble);
  const PairLoss out = pair_loss_reference(rewards, i64(kPos), i64(kNeg), 4.0, {0.5, 0.1});
  const double gaps[] = {0.5, 1.25, 1.0, 0.0, -2.25};
  const double sums[] = {1.5, 0.75, 3.0, 1.0, 1.75};  // r_pos + r_neg
  double expected = 0;
  for (int i = 0; i < 5; ++i) expected += softplus(-(gaps[i] - 0.5)) + 0.1 * sums[i] * sums[i];
  EXPECT_NEAR(out.loss_sum(), expected, 1e-12);
  EXPECT_NEAR(out.loss.item<double>(), expected / 4.0, 1e-12);
  // Accuracy reads the rewards, not the margin-shifted gaps.
  EXPECT_EQ(out.n_correct(), 3);
  EXPECT_EQ(out.n_ties(), 1);
}

TEST(PolarLoss, RewardScalePenalty) {
  const Tensor rewards = torch::tensor(kRewards, torch::kDouble);
  LossOptions options;
  options.reward_l2 = 0.2;
  const PairLoss out = pair_loss_reference(rewards, i64(kPos), i64(kNeg), 4.0, options);
  const PairLoss plain = pair_loss_reference(rewards, i64(kPos), i64(kNeg), 4.0, {});
  double penalty = 0;
  for (size_t i = 0; i < kPos.size(); ++i)
    penalty +=
        0.5 * 0.2 * (kRewards[kPos[i]] * kRewards[kPos[i]] + kRewards[kNeg[i]] * kRewards[kNeg[i]]);
  EXPECT_NEAR(out.loss_sum(), plain.loss_sum() + penalty, 1e-12);
  EXPECT_NEAR(out.loss.item<double>(), (plain.loss_sum() + penalty) / 4.0, 1e-12);
  EXPECT_EQ(out.n_correct(), plain.n_correct());  // the penalty never changes the accuracy count
}

TEST(PolarLoss, SwappedLabelsGiveComplementaryAccuracy) {
  const Tensor rewards = torch::tensor(kRewards, torch::kFloat);
  const PairLoss straight = pair_loss_reference(rewards, i64(kPos), i64(kNeg), 5.0, {});
  const PairLoss swapped = pair_loss_reference(rewards, i64(kNeg), i64(kPos), 5.0, {});
  EXPECT_EQ(swapped.n_correct(), straight.n_pairs - straight.n_correct() - straight.n_ties());
  EXPECT_EQ(swapped.n_ties(), straight.n_ties());
}

TEST(PolarLoss, StableAtLargeGaps) {
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    const Tensor rewards =
        torch::tensor(std::vector<double>{0.0, 1000.0, -1000.0}, dtype).requires_grad_(true);
    const PairLoss out = pair_loss_reference(rewards, i64({0, 1, 0}), i64({1, 0, 2}), 3.0, {});
    // pair 0: gap -1000 -> 1000; pair 1: gap 1000 -> 0; pair 2: gap 1000 -> 0.
    EXPECT_NEAR(out.loss_sum(), 1000.0, 1e-3);
    out.loss.backward();
    EXPECT_TRUE(torch::isfinite(rewards.grad()).all().item<bool>());
    // d/dr_0: pair 0 gives -sigmoid(1000) = -1 (pos), pair 1 +sigmoid(-1000) = 0, pair 2 ~0.
    EXPECT_NEAR(rewards.grad()[0].item<double>(), -1.0 / 3.0, 1e-6);
    EXPECT_NEAR(rewards.grad()[1].item<double>(), 1.0 / 3.0, 1e-6);
  }
}

TEST(PolarLoss, Dtypes) {
  const Tensor rewards = torch::tensor(kRewards, torch::kDouble);
  EXPECT_EQ(pair_loss_reference(rewards, i64(kPos), i64(kNeg), 5, {}).loss.scalar_type(),
            torch::kDouble);
  EXPECT_EQ(pair_loss_reference(rewards.to(torch::kFloat), i64(kPos), i64(kNeg), 5, {})
                .loss.scalar_type(),
            torch::kFloat);
  const PairLoss bf16 =
      pair_loss_reference(rewards.to(torch::kBFloat16), i64(kPos), i64(kNeg), 5, {});
  EXPECT_EQ(bf16.loss.scalar_type(), torch::kFloat);
  EXPECT_EQ(bf16.n_correct(), 3);  // these rewards are exact in bf16
}

TEST(PolarLoss, NoPairs) {
  const Tensor rewards = torch::tensor(kRewards, torch::kFloat).requires_grad_(true);
  const PairLoss out = pair_loss_reference(rewards, i64({}), i64({}), 8.0, {});
  EXPECT_EQ(out.loss.item<double>(), 0.0);
  EXPECT_EQ(out.n_pairs, 0);
  out.loss.backward();  // a rank with no pairs still takes part in backward
  EXPECT_EQ(rewards.grad().abs().sum().item<double>(), 0.0);
}

TEST(PolarLoss, RejectsBadInput) {
  const Tensor rewards = torch::tensor(kRewards, torch::kFloat);
  EXPECT_THROW(pair_loss_reference(rewards, i64(kPos), i64(kNeg), 0.0, {}), Error);
  EXPECT_THROW(pair_loss_reference(rewards, i64({0, 5}), i64({1, 2}), 2.0, {}), Error);
  EXPECT_THROW(pair_loss_reference(rewards, i64({0, -1}), i64({1, 2}), 2.0, {}), Error);
  EXPECT_THROW(pair_loss_reference(rewards, i64({0}), i64({1, 2}), 2.0, {}), Error);
  EXPECT_THROW(pair_loss_reference(rewards.view({1, 5}), i64(kPos), i64(kNeg), 2.0, {}), Error);
  EXPECT_THROW(pair_loss_reference(rewards, i64(kPos).to(torch::kInt32), i64(kNeg), 2.0, {}),
               Error);
}

TEST(PolarLoss, GradientMatchesFiniteDifferences) {
  torch::manual_seed(0);
  const Tensor base = torch::randn({7}, torch::kDouble) * 2;
  const Tensor pos = i64({0, 0, 0, 3, 3, 5, 6}), neg = i64({1, 2, 4, 4, 2, 6, 5});
  const LossOptions options{0.25, 0.07};
  const auto value = [&](const Tensor& r) {
    return pair_loss_reference(r, pos, neg, 9.0, options).loss.item<double>();
  };
  const Tensor rewards = base.clone().requires_grad_(true);
  pair_loss_reference(rewards, pos, neg, 9.0, options).loss.backward();
  const double h = 1e-6;
  for (int64_t i = 0; i < 7; ++i) {
    Tensor up = base.clone(), down = base.clone();
    up[i] += h;
    down[i] -= h;
    const double numeric = (value(up) - value(down)) / (2 * h);
    EXPECT_NEAR(rewards.grad()[i].item<double>(), numeric, 1e-8) << i;
  }
  // Closed form for reward 1 (a negative in pair 0 only): sigmoid(-(gap - m)) + 2c(r0 + r1), / 9.
  const double r0 = base[0].item<double>(), r1 = base[1].item<double>();
  const double closed = (1.0 / (1.0 + std::exp(r0 - r1 - 0.25)) + 2 * 0.07 * (r0 + r1)) / 9.0;
  EXPECT_NEAR(rewards.grad()[1].item<double>(), closed, 1e-12);
}

}  // namespace
}  // namespace polar
