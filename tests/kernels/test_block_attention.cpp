// varlen_attention_reference (block causal attention block by block) and varlen_attention_padded
// (the CPU path: length-bucketed padded SDPA calls) against masked SDPA run block by block on the
// expanded heads: forward and every input gradient, on random blocks with fewer queries than keys
// (shared-prefix candidates), equal counts, length 1, and a block with no queries.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "dense_blocks.h"
#include "polar/common/error.h"
#include "polar/kernels/attention.h"

namespace polar {
namespace {

using torch::Tensor;

struct Blocks {
  std::vector<int64_t> q_lens, k_lens;
  Tensor cu(const std::vector<int64_t>& lens) const {
    std::vector<int64_t> cu{0};
    for (int64_t l : lens) cu.push_back(cu.back() + l);
    return torch::tensor(cu, torch::kInt64);
  }
};

Tensor dense_blocks(const Tensor& q, const Tensor& k, const Tensor& v, const Blocks& b) {
  return testutil::dense_blocks(q, k, v, b.q_lens, b.k_lens);
}

using Attention = Tensor (*)(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             const Tensor&);

const std::vector<std::pair<const char*, Attention>> kImpls = {
    {"reference", &kernels::varlen_attention_reference},
    {"padded", &kernels::varlen_attention_padded}};

TEST(BlockAttention, MatchesMaskedSdpaForwardAndBackward) {
  for (const auto& [name, attention] : kImpls) {
    SCOPED_TRACE(name);
    torch::manual_seed(3);
    // Candidates over a prefix (lq < lk), plain sequences (lq == lk), length 1, no queries.
    const Blocks b{{9, 4, 1, 7, 0, 1, 13}, {9, 13, 10, 7, 9, 1, 30}};
    for (int64_t kv_heads : {4, 2, 1}) {
      int64_t nq = 0, nk = 0;
      for (size_t i = 0; i < b.q_lens.size(); ++i) nq += b.q_lens[i], nk += b.k_lens[i];
      const auto opts = torch::TensorOptions().dtype(torch::kDouble).requires_grad(true);
      const Tensor q = torch::randn({nq, 4, 8}, opts), k = torch::randn({nk, kv_heads, 8}, opts),
                   v = torch::randn({nk, kv_heads, 8}, opts);
      const Tensor w = torch::randn({nq, 4, 8}, torch::kDouble);  // a random upstream gradient
      const Tensor got = attention(q, k, v, b.cu(b.q_lens), b.cu(b.k_lens));
      const auto got_grads = torch::autograd::grad({(got * w).sum()}, {q, k, v});
      const Tensor ref = dense_blocks(q, k, v, b);
      const auto ref_grads = torch::autograd::grad({(ref * w).sum()}, {q, k, v});
      // fp64: only rounding differs.
      EXPECT_TRUE(torch::allclose(got, ref, 1e-10, 1e-12)) << "kv_heads " << kv_heads;
      for (size_t i = 0; i < 3; ++i)
        EXPECT_TRUE(torch::allclose(got_grads[i], ref_grads[i], 1e-10, 1e-12))
            << "kv_heads " << kv_heads << " input " << i;
    }
  }
}

TEST(BlockAttention, ParallelBlocksMatchFp32Reference) {
  // Many blocks take the multi-threaded loop; the result must not depend on it.
  torch::manual_seed(4);
  Blocks b;
  for (int i = 0; i < 40; ++i) {
    b.q_lens.push_back(1 + i % 7);
    b.k_lens.push_back(1 + i % 7 + (i % 3) * 5);
  }
  int64_t nq = 0, nk = 0;
  for (size_t i = 0; i < b.q_lens.size(); ++i) nq += b.q_lens[i], nk += b.k_lens[i];
  const Tensor q = torch::randn({nq, 4, 16}), k = torch::randn({nk, 2, 16}),
               v = torch::randn({nk, 2, 16});
  for (const auto& [name, attention] : kImpls) {
    const Tensor got = attention(q, k, v, b.cu(b.q_lens), b.cu(b.k_lens));
    EXPECT_TRUE(torch::allclose(got, dense_blocks(q, k, v, b), 1e-5, 1e-6)) << name;  // fp32
  }
}

TEST(BlockAttention, PaddedBucketsMixedLengthsExactlyInFp64) {
  // Shared-prefix groups of very different lengths: many padded chunks, padding on both the
  // query and the key side; the same blocks reordered must give the same rows.
  torch::manual_seed(5);
  Blocks b;
  for (int g = 0; g < 24; ++g) {
    const int64_t prefix = 1 + (g * 37) % 90;
    b.q_lens.push_back(prefix);
    b.k_lens.push_back(prefix);
    for (int c = 0; c < 1 + g % 4; ++c) {
      const int64_t len = 1 + (g * 13 + c * 7) % 40;
      b.q_lens.push_back(len);
      b.k_lens.push_back(prefix + len);
    }
  }
  int64_t nq = 0, nk = 0;
  for (size_t i = 0; i < b.q_lens.size(); ++i) nq += b.q_lens[i], nk += b.k_lens[i];
  const auto opts = torch::TensorOptions().dtype(torch::kDouble).requires_grad(true);
  const Tensor q = torch::randn({nq, 4, 8}, opts), k = torch::randn({nk, 2, 8}, opts),
               v = torch::randn({nk, 2, 8}, opts);
  const Tensor w = torch::randn({nq, 4, 8}, torch::kDouble);
  const Tensor got = kernels::varlen_attention_padded(q, k, v, b.cu(b.q_lens), b.cu(b.k_lens));
  const auto got_grads = torch::autograd::grad({(got * w).sum()}, {q, k, v});
  const Tensor ref = kernels::varlen_attention_reference(q, k, v, b.cu(b.q_lens), b.cu(b.k_lens));
  const auto ref_grads = torch::autograd::grad({(ref * w).sum()}, {q, k, v});
  EXPECT_TRUE(torch::allclose(got, ref, 1e-10, 1e-12));
  for (size_t i = 0; i < 3; ++i)
    EXPECT_TRUE(torch::allclose(got_grads[i], ref_grads[i], 1e-10, 1e-12)) << "input " << i;
  EXPECT_TRUE(torch::isfinite(got_grads[0]).all().item<bool>());
}

TEST(BlockAttention, RejectsBadBlocks) {
  for (const auto& [name, attention] : kImpls) {
    SCOPED_TRACE(name);
    const Tensor q = torch::randn({4, 2, 8}), k = torch::randn({4, 2, 8});
    const Tensor cu = torch::tensor({0, 4}, torch::kInt64);
    EXPECT_THROW(attention(q, k, k, cu, torch::tensor({0, 3}, torch::kInt64)), Error);
    EXPECT_THROW(attention(q, k, k, torch::tensor({0, 3, 4}, torch::kInt64),
                           torch::tensor({0, 1, 4}, torch::kInt64)),
                 Error);  // block 0 has more queries than keys
    EXPECT_THROW(attention(q, torch::randn({4, 3, 8}), torch::randn({4, 3, 8}), cu, cu),
                 Error);  // 2 query heads over 3 kv heads
  }
}

}  // namespace
}  // namespace polar
