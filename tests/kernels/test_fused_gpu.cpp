// The CUDA kernels against the references, on fresh random inputs (the seed is printed on
// failure): reward head (fp32 within 1e-5, bf16 within 1e-2 relative), grouped pair loss
// (G 1..1e5, K 1..64, shared indices, ties), varlen flash attention; forward and backward;
// bit-identical reruns. Every suite here is named *Gpu* (ctest label `gpu`) and reports SKIPPED
// when no CUDA device is present or the kernels are not compiled in.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../../src/kernels/fused_detail.h"
#include "mirror_loss.h"
#include "polar/common/error.h"
#include "polar/kernels/attention.h"
#include "polar/kernels/cuda.h"
#include "polar/kernels/pair_loss.h"
#include "polar/kernels/reward_head.h"
#include "polar/loss/polar_loss.h"

namespace polar::kernels {
namespace {

using torch::Tensor;

// POLAR_TEST_GPU_SUITES_ON_CPU=1 runs these suites' logic on CPU tensors through the kernels'
// CPU mirrors (tests that need a real device still skip): a check of the tests themselves on a
// machine without a GPU. It never counts as a GPU run.
bool on_cpu() {
  static const bool cpu = std::getenv("POLAR_TEST_GPU_SUITES_ON_CPU") != nullptr;
  return cpu;
}
torch::Device dev() { return on_cpu() ? torch::Device(torch::kCPU) : torch::Device(torch::kCUDA); }

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_kernels_available() && !on_cpu()) {
      GTEST_SKIP() << "needs a CUDA device and the kernels compiled in (POLAR_WITH_CUDA)";
    }
    seed_ = std::random_device{}();
    rng_.seed(seed_);
    torch::manual_seed(seed_);
  }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};
using FusedRewardHeadGpu = GpuTest;
using FusedPairLossGpu = GpuTest;
using VarlenAttentionGpu = GpuTest;

double rel_err(const Tensor& a, const Tensor& b) {
  const Tensor x = a.detach().to(torch::kCPU, torch::kDouble),
               y = b.detach().to(torch::kCPU, torch::kDouble);
  return (x - y).norm().item<double>() / std::max(y.norm().item<double>(), 1e-30);
}

torch::TensorOptions on_dev() { return torch::TensorOptions().device(dev()); }

// ---- reward head ----------------------------------------------------------------------------

struct Head {
  Tensor hidden, idx, nw, hw;
};

Head make_head(int64_t T, int64_t H, const Tensor& idx, torch::ScalarType dtype) {
  Head h;
  h.hidden = torch::randn({T, H}, on_dev()).to(dtype).requires_grad_();
  h.idx = idx.to(dev());
  h.nw = (1 + 0.3 * torch::randn({H}, on_dev())).to(dtype).requires_grad_();
  h.hw = torch::randn({1, H}, on_dev()).to(dtype).requires_grad_();
  return h;
}

// Rewards and the gradients of sum(c * r), by the kernel on the device or by the reference in
// double on the CPU from the very same (rounded) input values.
std::vector<Tensor> head_run(const Head& h, const Tensor& c, bool kernel) {
  if (kernel) {
    const Tensor r = detail::reward_head_fused(h.hidden, h.idx, h.nw, h.hw, 1e-6);
    auto g = torch::autograd::grad({(r * c).sum()}, {h.hidden, h.nw, h.hw});
    return {r, g[0], g[1], g[2]};
  }
  const auto d = [](const Tensor& t) {
    return t.detach().to(torch::kCPU, torch::kDouble).requires_grad_();
  };
  const Tensor hidden = d(h.hidden), nw = d(h.nw), hw = d(h.hw);
  const Tensor r = reward_head_reference(hidden, h.idx.cpu(), nw, hw, 1e-6);
  auto g = torch::autograd::grad({(r * c.cpu().to(torch::kDouble)).sum()}, {hidden, nw, hw});
  return {r, g[0], g[1], g[2]};
}

TEST_F(FusedRewardHeadGpu, MatchesReference) {
  struct Case {
    int64_t T, H, N;
    bool all_rows, repeats;
    torch::ScalarType dtype;
    double tol;
  };
  const std::vector<Case> cases = {
      {1, 8, 1, true, false, torch::kFloat, 1e-5},
      {5, 3, 5, true, false, torch::kFloat, 1e-5},
      {37, 67, 11, false, false, torch::kFloat, 1e-5},
      {300, 1031, 64, false, true, torch::kFloat, 1e-5},
      {2048, 4096, 257, false, false, torch::kFloat, 1e-5},
      {70, 4099, 70, true, false, torch::kFloat, 1e-5},
      {513, 2048, 300, false, true, torch::kFloat, 1e-5},
      {37, 67, 37, true, false, torch::kBFloat16, 1e-2},
      {1000, 4096, 129, false, true, torch::kBFloat16, 1e-2},
      {64, 1024, 17, false, false, torch::kHalf, 1e-2},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "seed " << seed_ << " T " << k.T << " H " << k.H << " N " << k.N << " "
                 << k.dtype << (k.repeats ? " repeated rows" : ""));
    // all_rows: every token is a reward token (length-1 sequences); repeats: rows read twice.
    Tensor idx = k.all_rows ? torch::randperm(k.T, torch::kLong)
                            : torch::randint(0, k.T, {k.N}, torch::kLong);
    if (!k.repeats && !k.all_rows) idx = torch::randperm(k.T, torch::kLong).slice(0, 0, k.N);
    const Head h = make_head(k.T, k.H, idx, k.dtype);
    const Tensor c = torch::randn({idx.size(0)}, on_dev());
    const auto got = head_run(h, c, true);
    const auto want = head_run(h, c, false);
    EXPECT_EQ(got[0].scalar_type(), torch::kFloat);
    EXPECT_TRUE(torch::isfinite(got[0]).all().item<bool>());
    const char* names[] = {"rewards", "d hidden", "d norm_weight", "d head_weight"};
    for (int i = 0; i < 4; ++i) {
      EXPECT_LT(rel_err(got[i], want[i]), k.tol) << names[i];
      if (i > 0) {
        EXPECT_EQ(got[i].scalar_type(), k.dtype) << names[i];
      }
    }
    // Rows never read get exactly zero gradient.
    const Tensor untouched = torch::ones({k.T}, torch::kBool).index_fill_(0, idx, false).to(dev());
    EXPECT_EQ(got[1].index({untouched}).abs().sum().item<double>(), 0.0);
  }
}

TEST_F(FusedRewardHeadGpu, BitIdenticalReruns) {
  const Head h =
      make_head(8192, 2048, torch::randint(0, 8192, {3000}, torch::kLong), torch::kBFloat16);
  const Tensor c = torch::randn({3000}, on_dev());
  const auto a = head_run(h, c, true);
  for (int rep = 0; rep < 3; ++rep) {
    const auto b = head_run(h, c, true);
    for (int i = 0; i < 4; ++i)
      EXPECT_TRUE(torch::equal(a[i], b[i])) << "output " << i << " rep " << rep;
  }
}

TEST_F(FusedRewardHeadGpu, OutOfRangeIndexGivesNaNNotAFault) {
  if (on_cpu()) GTEST_SKIP() << "needs the device itself";
  const Head h = make_head(16, 64, torch::tensor({3, 16, 5}, torch::kLong), torch::kFloat);
  const Tensor r = detail::reward_head_fused(h.hidden, h.idx, h.nw, h.hw, 1e-6).cpu();
  EXPECT_TRUE(std::isnan(r[1].item<float>()));
  EXPECT_TRUE(std::isfinite(r[0].item<float>()) && std::isfinite(r[2].item<float>()));
  torch::cuda::synchronize();  // the context is still healthy
}

TEST_F(FusedRewardHeadGpu, DispatchFollowsUseKernel) {
  if (on_cpu()) GTEST_SKIP() << "needs the device itself";
  const Head h =
      make_head(100, 256, torch::randperm(100, torch::kLong).slice(0, 0, 10), torch::kFloat);
  const Tensor on = reward_head(h.hidden, h.idx, h.nw, h.hw, 1e-6, true);
  const Tensor off = reward_head(h.hidden, h.idx, h.nw, h.hw, 1e-6, false);
  EXPECT_NE(on.grad_fn()->name().find("RewardHeadFunction"), std::string::npos)
      << on.grad_fn()->name();
  EXPECT_EQ(off.grad_fn()->name().find("RewardHeadFunction"), std::string::npos)
      << off.grad_fn()->name();
  EXPECT_LT(rel_err(on, off), 1e-5);
}

// ---- grouped pair loss --------------------------------------------------------------------

struct Csr {
  Tensor pos, offsets, neg, pair_pos;
  int64_t N = 0, P = 0;
};

Csr make_csr(int64_t G, int64_t k_min, int64_t k_max, bool shared, std::mt19937_64& rng) {
  std::vector<int64_t> ks(G);
  int64_t P = 0;
  for (auto& k : ks) P += (k = std::uniform_int_distribution<int64_t>(k_min, k_max)(rng));
  Csr c;
  c.P = P;
  c.N = shared ? std::max<int64_t>(2, (G + P) / 3) : G + P;
  const Tensor slots =
      shared ? torch::randint(0, c.N, {G + P}, torch::kLong) : torch::randperm(c.N, torch::kLong);
  c.pos = slots.slice(0, 0, G).contiguous();
  c.neg = slots.slice(0, G).contiguous();
  const Tensor counts = torch::tensor(ks, torch::kLong);
  c.offsets = torch::cat({torch::zeros({1}, torch::kLong), counts.cumsum(0)});
  c.pair_pos = c.pos.repeat_interleave(counts);
  return c;
}

// The shipped dispatch on the device; the kernels' CPU mirror in the on-CPU self-check.
PairLoss fused_loss(const Tensor& r, const Tensor& pos, const Tensor& off, const Tensor& neg,
                    double gp, const LossOptions& opt) {
  if (!on_cpu()) return pair_loss(r, pos, off, neg, gp, opt, /*fused=*/true);
  return testutil::grouped_kernel_loss(r, pos, off, neg, gp, opt);
}

TEST_F(FusedPairLossGpu, MatchesReference) {
  struct Case {
    int64_t G, k_min, k_max;
    bool shared;
    torch::ScalarType dtype;
    double margin, center;
  };
  const std::vector<Case> cases = {
      {1, 1, 1, false, torch::kFloat, 0, 0},
      {1, 64, 64, false, torch::kFloat, 0.5, 0.01},
      {2, 1, 64, true, torch::kFloat, 0, 0},
      {7, 1, 64, false, torch::kDouble, 0.1, 0.02},
      {1000, 1, 64, false, torch::kFloat, 0, 0.001},
      {1000, 1, 64, true, torch::kFloat, 0.2, 0},
      {100000, 1, 1, false, torch::kFloat, 0, 0},
      {100000, 1, 64, false, torch::kFloat, 0, 0.001},
      {100000, 1, 8, true, torch::kDouble, 0.3, 0.01},
      {33, 1, 9, false, torch::kBFloat16, 0, 0},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "seed " << seed_ << " G " << k.G << " K " << k.k_min << ".." << k.k_max
                 << (k.shared ? " shared" : "") << " " << k.dtype);
    const Csr c = make_csr(k.G, k.k_min, k.k_max, k.shared, rng_);
    Tensor r = (2 * torch::randn({c.N}, on_dev())).to(k.dtype);
    // Every third group's first negative copies its positive: the tie count is exercised.
    const Tensor every_third = torch::arange(0, k.G, 3, torch::kLong);
    const Tensor first_neg =
        c.neg.index_select(0, c.offsets.index_select(0, every_third)).to(dev());
    r.index_put_({first_neg}, r.index_select(0, c.pos.index_select(0, every_third).to(dev())));
    r.requires_grad_();
    LossOptions opt;
    opt.margin = k.margin;
    opt.center_coef = k.center;
    const double gp = 2.0 * c.P;
    const PairLoss got =
        fused_loss(r, c.pos.to(dev()), c.offsets.to(dev()), c.neg.to(dev()), gp, opt);
    const Tensor g_got = torch::autograd::grad({got.loss}, {r})[0];
    const Tensor rd = r.detach().cpu().to(torch::kDouble).requires_grad_();
    const PairLoss want = pair_loss_reference(rd, c.pair_pos, c.neg, gp, opt);
    const Tensor g_want = torch::autograd::grad({want.loss}, {rd})[0];
    const double tol = k.dtype == torch::kDouble ? 1e-12 : (k.dtype == torch::kFloat ? 1e-5 : 1e-2);
    EXPECT_LT(rel_err(got.loss, want.loss), tol);
    EXPECT_NEAR(got.loss_sum(), want.loss_sum(), tol * std::abs(want.loss_sum()));
    EXPECT_EQ(got.n_pairs, c.P);
    EXPECT_EQ(got.n_correct(), want.n_correct());
    EXPECT_EQ(got.n_ties(), want.n_ties());
    if (!k.shared) {
      EXPECT_GT(want.n_ties(), 0);
    }
    EXPECT_LT(rel_err(g_got, g_want), tol);
    EXPECT_EQ(g_got.scalar_type(), k.dtype);
  }
}

TEST_F(FusedPairLossGpu, BitIdenticalReruns) {
  const Csr c = make_csr(100000, 1, 64, true, rng_);
  const Tensor r = torch::randn({c.N}, on_dev()).requires_grad_();
  const Tensor pos = c.pos.to(dev()), off = c.offsets.to(dev()), neg = c.neg.to(dev());
  LossOptions opt;
  opt.center_coef = 0.01;
  const PairLoss a = fused_loss(r, pos, off, neg, c.P, opt);
  const Tensor ga = torch::autograd::grad({a.loss}, {r})[0];
  for (int rep = 0; rep < 3; ++rep) {
    const PairLoss b = fused_loss(r, pos, off, neg, c.P, opt);
    EXPECT_TRUE(torch::equal(a.loss, b.loss)) << rep;
    EXPECT_EQ(a.loss_sum(), b.loss_sum());
    EXPECT_TRUE(torch::equal(ga, torch::autograd::grad({b.loss}, {r})[0])) << rep;
  }
}

TEST_F(FusedPairLossGpu, RejectsBadCsrAndStaysUsable) {
  if (on_cpu()) GTEST_SKIP() << "needs the device itself";
  const Tensor r = torch::randn({6}, on_dev());
  const auto t = [](std::vector<int64_t> v) { return torch::tensor(v, torch::kLong).to(dev()); };
  // The kernel counts what it refuses on the device; reading the counts throws.
  const auto counts = [&](const Tensor& off, const Tensor& neg) {
    return read_pair_counts(pair_loss(r, t({0, 1}), off, neg, 2.0, {}, true).stats);
  };
  EXPECT_THROW(counts(t({0, 2, 2}), t({2, 3})), polar::Error);
  EXPECT_THROW(counts(t({0, 1, 2}), t({2, 9})), polar::Error);
  EXPECT_THROW(counts(t({0, 1, 3}), t({2, 3})), polar::Error);
  const PairLoss ok = pair_loss(r, t({0, 1}), t({0, 1, 2}), t({2, 3}), 2.0, {}, true);
  EXPECT_TRUE(std::isfinite(ok.loss.item<float>()));
}

// ---- varlen attention ---------------------------------------------------------------------

// Per-sequence causal softmax attention in fp32 (k/v heads repeated for GQA): (T, Hq, D).
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v,
                           const std::vector<int64_t>& cu) {
  const int64_t rep = q.size(1) / k.size(1);
  std::vector<Tensor> outs;
  for (size_t s = 0; s + 1 < cu.size(); ++s) {
    const int64_t b = cu[s], L = cu[s + 1] - cu[s];
    const Tensor qs = q.slice(0, b, b + L).transpose(0, 1).to(torch::kFloat);
    const Tensor ks =
        k.slice(0, b, b + L).transpose(0, 1).repeat_interleave(rep, 0).to(torch::kFloat);
    const Tensor vs =
        v.slice(0, b, b + L).transpose(0, 1).repeat_interleave(rep, 0).to(torch::kFloat);
    const Tensor mask = torch::ones({L, L}, q.options().dtype(torch::kBool)).triu(1);
    const Tensor p = (torch::matmul(qs, ks.transpose(1, 2)) / std::sqrt(double(q.size(2))))
                         .masked_fill(mask, -std::numeric_limits<float>::infinity())
                         .softmax(-1);
    outs.push_back(torch::matmul(p, vs).transpose(0, 1));
  }
  return torch::cat(outs);
}

TEST_F(VarlenAttentionGpu, MatchesMathReference) {
  if (on_cpu()) GTEST_SKIP() << "needs the device itself";
  struct Case {
    std::vector<int64_t> lens;
    int64_t hq, hkv, d;
  };
  const std::vector<Case> cases = {
      {{1, 17, 128, 3, 64}, 4, 2, 64}, {{1}, 2, 2, 128}, {{300, 1, 211}, 8, 1, 128}};
  for (const Case& k : cases) {
    std::vector<int64_t> cu = {0};
    for (auto l : k.lens) cu.push_back(cu.back() + l);
    const int64_t T = cu.back(), max_len = *std::max_element(k.lens.begin(), k.lens.end());
    SCOPED_TRACE(::testing::Message()
                 << "seed " << seed_ << " T " << T << " Hq " << k.hq << " Hkv " << k.hkv);
    const auto bf = on_dev().dtype(torch::kBFloat16);
    const Tensor q = torch::randn({T, k.hq, k.d}, bf).requires_grad_();
    const Tensor kk = torch::randn({T, k.hkv, k.d}, bf).requires_grad_();
    const Tensor v = torch::randn({T, k.hkv, k.d}, bf).requires_grad_();
    ASSERT_TRUE(varlen_attention_available(q));
    const Tensor go = torch::randn({T, k.hq, k.d}, bf);
    const Tensor out =
        varlen_attention(q, kk, v, torch::tensor(cu, torch::kInt).to(dev()), max_len);
    ASSERT_EQ(out.sizes(), q.sizes());
    const auto g = torch::autograd::grad({out}, {q, kk, v}, {go});
    const Tensor ref = attention_reference(q, kk, v, cu);
    const auto gr = torch::autograd::grad({ref}, {q, kk, v}, {go.to(torch::kFloat)});
    EXPECT_LT(rel_err(out, ref), 1e-2);
    for (int i = 0; i < 3; ++i) EXPECT_LT(rel_err(g[i], gr[i]), 2e-2) << "grad " << i;
  }
}

}  // namespace
}  // namespace polar::kernels
