// CPU checks of the fused paths' references (run everywhere, no GPU): the reward-head reference
// and the grouped loss against finite differences in double, the grouped loss against
// pair_loss_reference on the expanded pairs, and the CPU mirror of the kernels' algorithm (the
// closed-form backward and the occurrence-ordered loss gradient the CUDA code implements)
// against both. The kernels themselves are compared with these in test_fused_gpu.cpp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "../../src/kernels/fused_detail.h"
#include "mirror_loss.h"
#include "polar/common/error.h"
#include "polar/kernels/attention.h"
#include "polar/kernels/pair_loss.h"
#include "polar/kernels/reward_head.h"
#include "polar/loss/polar_loss.h"

namespace polar::kernels {
namespace {

using torch::Tensor;

double rel_err(const Tensor& a, const Tensor& b) {
  const Tensor x = a.detach().to(torch::kCPU, torch::kDouble),
               y = b.detach().to(torch::kCPU, torch::kDouble);
  return (x - y).norm().item<double>() / std::max(y.norm().item<double>(), 1e-30);
}

// Central differences of a scalar function of `x` (double), element by element.
Tensor finite_difference(const std::function<double()>& f, Tensor x, double h = 1e-6) {
  Tensor g = torch::zeros_like(x);
  auto xf = x.view({-1});
  auto gf = g.view({-1});
  torch::NoGradGuard ng;
  for (int64_t i = 0; i < xf.size(0); ++i) {
    const double v = xf[i].item<double>();
    xf[i] = v + h;
    const double fp = f();
    xf[i] = v - h;
    const double fm = f();
    xf[i] = v;
    gf[i] = (fp - fm) / (2 * h);
  }
  return g;
}

struct HeadInputs {
  Tensor hidden, idx, nw, hw;
};

HeadInputs head_inputs(int64_t T, int64_t H, std::vector<int64_t> idx, torch::ScalarType dtype,
                       uint64_t seed) {
  torch::manual_seed(seed);
  HeadInputs in;
  in.hidden = torch::randn({T, H}, torch::kDouble).to(dtype).requires_grad_();
  in.idx = torch::tensor(idx, torch::kLong);
  in.nw = (1 + 0.3 * torch::randn({H}, torch::kDouble)).to(dtype).requires_grad_();
  in.hw = torch::randn({1, H}, torch::kDouble).to(dtype).requires_grad_();
  return in;
}

using HeadFn = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&)>;

// Objective sum(c * rewards) with fixed random c, and its gradients through autograd.
std::vector<Tensor> head_grads(const HeadFn& fn, const HeadInputs& in, const Tensor& c) {
  const Tensor r = fn(in.hidden, in.idx, in.nw, in.hw);
  return torch::autograd::grad({(r * c.to(r.scalar_type())).sum()}, {in.hidden, in.nw, in.hw});
}

void expect_head_fd(const HeadFn& fn, const HeadInputs& in) {
  const Tensor c = torch::randn({in.idx.size(0)}, torch::kDouble);
  const auto grads = head_grads(fn, in, c);
  const std::vector<Tensor> params = {in.hidden, in.nw, in.hw};
  const char* names[] = {"hidden", "norm_weight", "head_weight"};
  for (size_t p = 0; p < params.size(); ++p) {
    const Tensor fd = finite_difference(
        [&] { return (fn(in.hidden, in.idx, in.nw, in.hw) * c).sum().item<double>(); },
        params[p].detach());
    EXPECT_LT(rel_err(grads[p], fd), 1e-7) << names[p];
  }
}

const HeadFn kReference = [](const Tensor& h, const Tensor& i, const Tensor& n, const Tensor& w) {
  return reward_head_reference(h, i, n, w, 1e-6);
};
const HeadFn kMirror = [](const Tensor& h, const Tensor& i, const Tensor& n, const Tensor& w) {
  return detail::reward_head_fused(h, i, n, w, 1e-6);
};

TEST(FusedRewardHeadReference, GradientsMatchFiniteDifferences) {
  // A repeated index (3) checks that the gradients of a row read twice add up.
  expect_head_fd(kReference, head_inputs(7, 5, {3, 0, 6, 3}, torch::kDouble, 1));
  expect_head_fd(kReference, head_inputs(2, 3, {1}, torch::kDouble, 2));
}

TEST(FusedRewardHeadReference, KernelFormulasMatchFiniteDifferences) {
  // The closed-form backward the CUDA kernel implements, run through the CPU mirror in double.
  expect_head_fd(kMirror, head_inputs(7, 5, {3, 0, 6, 3}, torch::kDouble, 3));
  expect_head_fd(kMirror, head_inputs(9, 13, {8, 7, 6, 5, 4, 3, 2, 1, 0}, torch::kDouble, 4));
}

TEST(FusedRewardHeadReference, KernelFormulasMatchReference) {
  struct Case {
    int64_t T, H;
    std::vector<int64_t> idx;
    torch::ScalarType dtype;
    double tol;
  };
  std::vector<int64_t> all37(37);
  for (int64_t i = 0; i < 37; ++i) all37[i] = i;  // every token a reward token: length-1 sequences
  const std::vector<Case> cases = {
      {7, 5, {3, 0, 6, 3}, torch::kDouble, 1e-12},
      {37, 67, all37, torch::kDouble, 1e-12},
      {37, 67, {36, 0, 17}, torch::kFloat, 1e-5},
      {300, 1031, {299, 5, 5, 100, 7, 250}, torch::kFloat, 1e-5},
      {50, 96, {1, 2, 49}, torch::kBFloat16, 1e-2},
  };
  uint64_t seed = 10;
  for (const Case& k : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "T " << k.T << " H " << k.H << " N " << k.idx.size() << " " << k.dtype);
    const HeadInputs in = head_inputs(k.T, k.H, k.idx, k.dtype, ++seed);
    const Tensor r_ref = kReference(in.hidden, in.idx, in.nw, in.hw);
    const Tensor r_mir = kMirror(in.hidden, in.idx, in.nw, in.hw);
    EXPECT_EQ(r_mir.scalar_type(), r_ref.scalar_type());
    EXPECT_LT(rel_err(r_mir, r_ref), k.tol);
    const Tensor c = torch::randn({static_cast<int64_t>(k.idx.size())}, torch::kDouble);
    const auto g_ref = head_grads(kReference, in, c);
    const auto g_mir = head_grads(kMirror, in, c);
    for (int p = 0; p < 3; ++p) {
      EXPECT_EQ(g_mir[p].scalar_type(), g_ref[p].scalar_type()) << p;
      EXPECT_EQ(g_mir[p].sizes(), g_ref[p].sizes()) << p;
      EXPECT_LT(rel_err(g_mir[p], g_ref[p]), k.tol) << "gradient " << p;
    }
  }
}

TEST(FusedRewardHeadReference, CpuDispatchIsTheReference) {
  const HeadInputs in = head_inputs(11, 6, {10, 2}, torch::kFloat, 20);
  const Tensor a = reward_head(in.hidden, in.idx, in.nw, in.hw, 1e-6, /*use_kernel=*/true);
  const Tensor b = reward_head_reference(in.hidden, in.idx, in.nw, in.hw, 1e-6);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_EQ(a.scalar_type(), torch::kFloat);
}

TEST(FusedRewardHeadReference, RejectsBadInput) {
  const HeadInputs in = head_inputs(4, 3, {0}, torch::kFloat, 21);
  const Tensor bad_idx = torch::tensor({0, 4}, torch::kLong);
  EXPECT_THROW(reward_head(in.hidden, bad_idx, in.nw, in.hw, 1e-6), polar::Error);
  EXPECT_THROW(detail::reward_head_fused(in.hidden, bad_idx, in.nw, in.hw, 1e-6), polar::Error);
  EXPECT_THROW(reward_head(in.hidden, in.idx, in.nw, torch::ones({2, 3}), 1e-6), polar::Error);
  EXPECT_THROW(reward_head(in.hidden, in.idx, torch::ones({4}), in.hw, 1e-6), polar::Error);
  EXPECT_THROW(reward_head(in.hidden.view({-1}), in.idx, in.nw, in.hw, 1e-6), polar::Error);
}

// ---- grouped pair loss ---------------------------------------------------------------------

struct Groups {
  Tensor pos, offsets, neg;   // CSR
  Tensor pair_pos, pair_neg;  // the expanded pairs
  int64_t P = 0;
};

// G groups with K_g uniform in [k_min, k_max]. Distinct indices, unless `shared`: then indices
// are drawn with replacement, so a reward can be the positive of one group and a negative of
// several others (the general case of the occurrence-ordered backward).
Groups make_groups(int64_t G, int64_t k_min, int64_t k_max, bool shared, int64_t& N,
                   std::mt19937_64& rng) {
  std::vector<int64_t> ks(G);
  for (auto& k : ks) k = std::uniform_int_distribution<int64_t>(k_min, k_max)(rng);
  int64_t P = 0;
  for (auto k : ks) P += k;
  N = shared ? std::max<int64_t>(2, (G + P) / 3) : G + P;
  std::vector<int64_t> perm(N);
  for (int64_t i = 0; i < N; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  std::uniform_int_distribution<int64_t> any(0, N - 1);
  std::vector<int64_t> pos(G), offsets(G + 1, 0), neg, pp;
  int64_t next = 0;
  for (int64_t g = 0; g < G; ++g) {
    pos[g] = shared ? any(rng) : perm[next++];
    for (int64_t k = 0; k < ks[g]; ++k) {
      neg.push_back(shared ? any(rng) : perm[next++]);
      pp.push_back(pos[g]);
    }
    offsets[g + 1] = offsets[g] + ks[g];
  }
  Groups out;
  out.pos = torch::tensor(pos, torch::kLong);
  out.offsets = torch::tensor(offsets, torch::kLong);
  out.neg = torch::tensor(neg, torch::kLong);
  out.pair_pos = torch::tensor(pp, torch::kLong);
  out.pair_neg = out.neg.clone();
  out.P = P;
  return out;
}

// Random rewards where every third group's first negative ties with its positive, so the tie
// count is exercised.
Tensor make_rewards(int64_t N, const Groups& g, torch::ScalarType dtype, std::mt19937_64& rng) {
  torch::manual_seed(rng());
  Tensor r = (2 * torch::randn({N}, torch::kDouble)).to(dtype);
  const Tensor every_third = torch::arange(0, g.pos.size(0), 3, torch::kLong);
  const Tensor first_neg = g.neg.index_select(0, g.offsets.index_select(0, every_third));
  r.index_put_({first_neg}, r.index_select(0, g.pos.index_select(0, every_third)));
  return r.requires_grad_();
}

// The kernels' algorithm on CPU tensors (their mirror), as the loss module's PairLoss.
const auto mirror_loss = testutil::grouped_kernel_loss;

TEST(FusedPairLossReference, GroupedEqualsExpandedPairs) {
  std::mt19937_64 rng(7);
  struct Case {
    int64_t G, k_min, k_max;
    bool shared;
    torch::ScalarType dtype;
    LossOptions opt;
  };
  LossOptions plain, both;
  both.margin = 0.25;
  both.center_coef = 0.01;
  const std::vector<Case> cases = {
      {1, 1, 1, false, torch::kDouble, plain},    {1, 64, 64, false, torch::kDouble, both},
      {3, 1, 64, false, torch::kFloat, both},     {50, 1, 64, true, torch::kDouble, both},
      {200, 1, 64, false, torch::kFloat, plain},  {97, 1, 5, true, torch::kFloat, both},
      {100000, 1, 4, false, torch::kFloat, both},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(::testing::Message() << "G " << k.G << " K " << k.k_min << ".." << k.k_max
                                      << (k.shared ? " shared" : "") << " " << k.dtype);
    int64_t N = 0;
    const Groups g = make_groups(k.G, k.k_min, k.k_max, k.shared, N, rng);
    const Tensor r = make_rewards(N, g, k.dtype, rng);
    const double global_pairs = 1.5 * g.P;  // as if other micro-batches held more pairs
    const PairLoss want = pair_loss_reference(r, g.pair_pos, g.pair_neg, global_pairs, k.opt);
    const PairLoss ref =
        pair_loss(r, g.pos, g.offsets, g.neg, global_pairs, k.opt, /*fused=*/false);
    const PairLoss mir = mirror_loss(r, g.pos, g.offsets, g.neg, global_pairs, k.opt);
    // The reference path is pair_loss_reference itself: bit-identical.
    EXPECT_TRUE(torch::equal(ref.loss, want.loss));
    EXPECT_EQ(ref.n_pairs, g.P);
    EXPECT_EQ(ref.n_correct(), want.n_correct());
    // The mirror sums in another order: fp32 to rounding, double to ~1e-12.
    const double tol = k.dtype == torch::kDouble ? 1e-12 : 1e-5;
    EXPECT_EQ(mir.loss.scalar_type(), want.loss.scalar_type());
    EXPECT_LT(rel_err(mir.loss, want.loss), tol);
    EXPECT_NEAR(mir.loss_sum(), want.loss_sum(), tol * std::abs(want.loss_sum()));
    EXPECT_EQ(mir.n_pairs, want.n_pairs);
    EXPECT_EQ(mir.n_correct(), want.n_correct());
    EXPECT_EQ(mir.n_ties(), want.n_ties());
    EXPECT_GT(want.n_ties(), 0);
    const Tensor g_want = torch::autograd::grad({want.loss}, {r})[0];
    const Tensor g_mir = torch::autograd::grad({mir.loss}, {r})[0];
    EXPECT_LT(rel_err(g_mir, g_want), tol);
  }
}

TEST(FusedPairLossReference, GradientsMatchFiniteDifferences) {
  std::mt19937_64 rng(11);
  LossOptions opt;
  opt.margin = 0.3;
  opt.center_coef = 0.05;
  for (bool shared : {false, true}) {
    int64_t N = 0;
    const Groups g = make_groups(5, 1, 6, shared, N, rng);
    const Tensor r = make_rewards(N, g, torch::kDouble, rng);
    for (bool mirror : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << (shared ? "shared " : "") << (mirror ? "mirror" : "reference"));
      auto loss = [&] {
        return mirror ? mirror_loss(r, g.pos, g.offsets, g.neg, 40.0, opt).loss
                      : pair_loss(r, g.pos, g.offsets, g.neg, 40.0, opt, false).loss;
      };
      const Tensor grad = torch::autograd::grad({loss()}, {r})[0];
      const Tensor fd = finite_difference([&] { return loss().item<double>(); }, r.detach());
      EXPECT_LT(rel_err(grad, fd), 1e-7);
    }
  }
}

TEST(FusedPairLossReference, OccurrenceMapListsEachRewardsUsesInOrder) {
  // Groups: g0 = (pos 2; neg 0, 1), g1 = (pos 0; neg 2). Ids: g0 -> 0, g1 -> 1, pairs -> 2, 3, 4.
  const auto map = detail::occurrence_map(torch::tensor({2, 0}, torch::kLong),
                                          torch::tensor({0, 1, 2}, torch::kLong), 4);
  EXPECT_TRUE(torch::equal(map.offsets, torch::tensor({0, 2, 3, 5, 5}, torch::kLong)));
  EXPECT_TRUE(torch::equal(map.entries, torch::tensor({1, 2, 3, 0, 4}, torch::kLong)));
}

TEST(FusedPairLossReference, RejectsBadCsr) {
  const Tensor r = torch::randn({6});
  const auto t = [](std::vector<int64_t> v) { return torch::tensor(v, torch::kLong); };
  struct Bad {
    Tensor pos, offsets, neg;
    const char* why;
  };
  const std::vector<Bad> bad = {
      {t({0, 1}), t({1, 2, 3}), t({2, 3, 4}), "offsets do not start at 0"},
      {t({0, 1}), t({0, 2, 2}), t({2, 3}), "a group with K = 0"},
      {t({0, 1}), t({0, 1, 2}), t({2, 3, 4}), "offsets do not end at P"},
      {t({0, 6}), t({0, 1, 2}), t({2, 3}), "positive out of range"},
      {t({0, 1}), t({0, 1, 2}), t({2, -1}), "negative out of range"},
      {t({0, 1}), t({0, 1}), t({2, 3}), "offsets of the wrong length"},
  };
  for (const Bad& b : bad) {
    EXPECT_THROW(pair_loss(r, b.pos, b.offsets, b.neg, 2.0, {}, false), polar::Error) << b.why;
    // The mirror, like the kernel, counts what it refuses; reading the counts throws.
    EXPECT_THROW(read_pair_counts(mirror_loss(r, b.pos, b.offsets, b.neg, 2.0, {}).stats),
                 polar::Error)
        << b.why;
  }
  EXPECT_THROW(pair_loss(r, t({0}), t({0, 1}), t({1}), 0.0, {}, true), polar::Error);
}

TEST(FusedAttention, VarlenIsUnavailableOnCpu) {
  const Tensor q = torch::randn({8, 2, 16}).to(torch::kBFloat16);
  const Tensor cu = torch::tensor({0, 3, 8}, torch::kInt);
  EXPECT_FALSE(varlen_attention_available(q));
  EXPECT_THROW(varlen_attention(q, q, q, cu, 5), polar::Error);
}

}  // namespace
}  // namespace polar::kernels
