// The one-pass CPU kernels against the ATen compositions they replace (HF's arithmetic): forward
// and every input gradient, fp64 (only summation order differs: 1e-12) and fp32 (rounding:
// 1e-5 relative), odd sizes, one row, and the rejections.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <vector>

#include "polar/common/error.h"
#include "polar/kernels/cpu_fused.h"

namespace polar {
namespace {

using torch::Tensor;

Tensor rms_norm_composition(const Tensor& x, const Tensor& w, double eps) {
  return w * (x * torch::rsqrt(x.square().mean(-1, true) + eps));
}

Tensor rope_composition(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const Tensor rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
}

// Forward and gradients of fused vs composed on the same inputs and a random upstream gradient.
void expect_same(const std::function<Tensor(const std::vector<Tensor>&)>& fused,
                 const std::function<Tensor(const std::vector<Tensor>&)>& composed,
                 const std::vector<Tensor>& inputs, double rtol, double atol) {
  const Tensor got = fused(inputs), want = composed(inputs);
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_TRUE(torch::allclose(got, want, rtol, atol)) << (got - want).abs().max();
  std::vector<Tensor> wrt;
  for (const Tensor& t : inputs)
    if (t.requires_grad()) wrt.push_back(t);
  const Tensor w = torch::randn_like(want);
  const auto g_got = torch::autograd::grad({(got * w).sum()}, wrt);
  const auto g_want = torch::autograd::grad({(want * w).sum()}, wrt);
  for (size_t i = 0; i < wrt.size(); ++i)
    EXPECT_TRUE(torch::allclose(g_got[i], g_want[i], rtol, atol))
        << "input " << i << ": " << (g_got[i] - g_want[i]).abs().max();
}

struct Tolerance {
  torch::ScalarType dtype;
  double rtol, atol;
};
const std::vector<Tolerance> kTolerances = {{torch::kDouble, 1e-12, 1e-12},
                                            {torch::kFloat, 1e-5, 1e-5}};

TEST(CpuFused, RmsNormEqualsHfComposition) {
  torch::manual_seed(11);
  for (const auto& [dtype, rtol, atol] : kTolerances) {
    for (const std::vector<int64_t>& shape :
         std::vector<std::vector<int64_t>>{{1, 8}, {3, 37, 24}, {517, 128}}) {
      const auto opts = torch::TensorOptions().dtype(dtype).requires_grad(true);
      const Tensor x = torch::randn(shape, opts);
      const Tensor w =
          (torch::rand({shape.back()}, opts.requires_grad(false)) + 0.5).set_requires_grad(true);
      expect_same([](const auto& in) { return kernels::rms_norm_cpu(in[0], in[1], 1e-6); },
                  [](const auto& in) { return rms_norm_composition(in[0], in[1], 1e-6); }, {x, w},
                  rtol, atol);
    }
  }
}

TEST(CpuFused, RopeEqualsHfComposition) {
  torch::manual_seed(12);
  for (const auto& [dtype, rtol, atol] : kTolerances) {
    for (const auto& [n, heads, d] :
         std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 1, 2}, {13, 3, 10}, {301, 4, 32}}) {
      const Tensor x = torch::randn({n, heads, d}, torch::dtype(dtype).requires_grad(true));
      const Tensor angles = torch::rand({n, d}, torch::kDouble) * 100;
      const Tensor cos = angles.cos().to(dtype), sin = angles.sin().to(dtype);
      expect_same([&](const auto& in) { return kernels::rope_cpu(in[0], cos, sin); },
                  [&](const auto& in) { return rope_composition(in[0], cos, sin); }, {x}, rtol,
                  atol);
    }
  }
}

TEST(CpuFused, NonContiguousInputsAndRejections) {
  torch::manual_seed(14);
  const Tensor x = torch::randn({16, 8}).t();  // (8, 16), not contiguous
  const Tensor w = torch::ones({16});
  EXPECT_TRUE(torch::allclose(kernels::rms_norm_cpu(x, w, 1e-6), rms_norm_composition(x, w, 1e-6),
                              1e-5, 1e-6));
  EXPECT_FALSE(kernels::cpu_fused_available(torch::randn({4}, torch::kBFloat16)));
  EXPECT_THROW(kernels::rms_norm_cpu(torch::randn({4, 8}), torch::ones({7}), 1e-6), Error);
  EXPECT_THROW(kernels::rope_cpu(torch::randn({4, 2, 7}), torch::ones({4, 7}), torch::ones({4, 7})),
               Error);  // odd head dimension
}

}  // namespace
}  // namespace polar
