// The listwise loss (loss.type listwise): the value by hand, exactly the pairwise loss at K = 1
// (values and gradients), gradients against finite differences in double at K = 4, stability.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "polar/common/error.h"
#include "polar/loss/loss_registry.h"
#include "polar/loss/polar_loss.h"

namespace polar {
namespace {

using torch::Tensor;

// G groups of K negatives over N = G * (K + 1) rewards: group g is candidates g*(K+1) (the
// positive) .. g*(K+1)+K.
struct Groups {
  Tensor pair_pos, pair_neg, pos_index;
};

Groups make_groups(int64_t G, int64_t K) {
  std::vector<int64_t> pos, neg, first;
  for (int64_t g = 0; g < G; ++g) {
    first.push_back(g * (K + 1));
    for (int64_t k = 1; k <= K; ++k) {
      pos.push_back(g * (K + 1));
      neg.push_back(g * (K + 1) + k);
    }
  }
  return {torch::tensor(pos, torch::kInt64), torch::tensor(neg, torch::kInt64),
          torch::tensor(first, torch::kInt64)};
}

Tensor grad_of(const Tensor& loss, const Tensor& x) {
  return torch::autograd::grad({loss}, {x})[0];
}

TEST(ListwiseLoss, ValueByHand) {
  // One group: positive 1.0, negatives 0.5 and -0.25, margin 0.2.
  const Tensor r = torch::tensor(std::vector<double>{1.0, 0.5, -0.25}, torch::kDouble);
  const Groups g = make_groups(1, 2);
  LossOptions options;
  options.margin = 0.2;
  const PairLoss out = listwise_loss(r, g.pair_pos, g.pair_neg, g.pos_index, {2.0, 4.0}, options);
  const double expected =
      -std::log(std::exp(1.0) / (std::exp(1.0) + std::exp(0.7) + std::exp(-0.05)));
  EXPECT_NEAR(out.loss_sum(), expected, 1e-12);
  EXPECT_NEAR(out.loss.item<double>(), expected / 4.0, 1e-12);  // divided by the groups
  EXPECT_EQ(out.n_pairs, 2);
  EXPECT_EQ(out.n_correct(), 2);
}

TEST(ListwiseLoss, EqualsPairwiseExactlyAtK1) {
  torch::manual_seed(3);
  const int64_t G = 37;
  const Groups g = make_groups(G, 1);
  // Margin only, and margin with both penalties.
  for (const LossOptions& options : {LossOptions{0.3}, LossOptions{0.3, 0.05, 0.1}}) {
    const bool penalties = options.center_coef != 0;
    for (auto dtype : {torch::kDouble, torch::kFloat}) {
      const Tensor r = (3 * torch::randn({2 * G}, dtype)).requires_grad_(true);
      const PairLoss pairwise = pair_loss_reference(r, g.pair_pos, g.pair_neg, 50.0, options);
      const PairLoss listwise =
          listwise_loss(r, g.pair_pos, g.pair_neg, g.pos_index, LossDivisors{50.0, 50.0}, options);
      EXPECT_TRUE(torch::equal(pairwise.loss, listwise.loss))
          << pairwise.loss.item<double>() << " vs " << listwise.loss.item<double>();
      EXPECT_TRUE(torch::equal(pairwise.stats, listwise.stats));
      const Tensor a = grad_of(pairwise.loss, r), b = grad_of(listwise.loss, r);
      if (!penalties) {
        EXPECT_TRUE(torch::equal(a, b));
      } else {
        // Each reward's gradient sums three terms, which autograd may add in another order.
        EXPECT_TRUE(torch::allclose(a, b, dtype == torch::kDouble ? 1e-14 : 1e-6, 0));
      }
    }
  }
}

TEST(ListwiseLoss, GradientsMatchFiniteDifferencesAtK4) {
  torch::manual_seed(5);
  const int64_t G = 3, K = 4;
  const Groups g = make_groups(G, K);
  LossOptions options{0.3, 0.05, 0.1};
  const Tensor r = torch::randn({G * (K + 1)}, torch::kDouble).requires_grad_(true);
  const auto loss_at = [&](const Tensor& x) {
    return listwise_loss(x, g.pair_pos, g.pair_neg, g.pos_index, {12.0, 5.0}, options).loss;
  };
  const Tensor analytic = grad_of(loss_at(r), r);
  const Tensor base = r.detach();
  const double eps = 1e-6;
  for (int64_t i = 0; i < base.size(0); ++i) {
    Tensor plus = base.clone(), minus = base.clone();
    plus[i] += eps;
    minus[i] -= eps;
    const double numeric =
        (loss_at(plus).item<double>() - loss_at(minus).item<double>()) / (2 * eps);
    // Central differences in double: error ~eps^2 * f''' + 1e-16 / eps, well under 1e-8.
    EXPECT_NEAR(analytic[i].item<double>(), numeric, 1e-8) << "reward " << i;
  }
}

TEST(ListwiseLoss, StableAtLargeGaps) {
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    const Groups g = make_groups(2, 2);
    const Tensor r =
        torch::tensor(std::vector<double>{1000.0, 0.0, -1000.0, -1000.0, 0.0, 1000.0}, dtype)
            .requires_grad_(true);
    const PairLoss out = listwise_loss(r, g.pair_pos, g.pair_neg, g.pos_index, {4.0, 2.0}, {});
    // Group 0 is right by 1000 (loss 0); group 1 is wrong by 2000 (loss 2000).
    EXPECT_NEAR(out.loss_sum(), 2000.0, 1e-2);
    const Tensor grad = grad_of(out.loss, r);
    EXPECT_TRUE(torch::isfinite(grad).all().item<bool>());
  }
}

TEST(ListwiseLoss, RejectsOutOfRangeIndices) {
  const Groups g = make_groups(1, 2);
  const Tensor r = torch::zeros({2}, torch::kDouble);  // one reward short
  EXPECT_THROW(listwise_loss(r, g.pair_pos, g.pair_neg, g.pos_index, {}, {}), Error);
}

TEST(LossRegistry, DivisorFollowsTheLoss) {
  LossOptions options;
  EXPECT_EQ(loss_divisor(options, {12.0, 3.0}), 12.0);
  options.type = LossType::Listwise;
  EXPECT_EQ(loss_divisor(options, {12.0, 3.0}), 3.0);
}

}  // namespace
}  // namespace polar
