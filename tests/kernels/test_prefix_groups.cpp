// varlen_attention_padded with keys read through key_index, as the model passes a shared-prefix
// batch: each group's prefix rows appear once in k and every candidate's key slots name them.
// Against masked SDPA block by block over the gathered keys, forward and every input gradient
// (the prefix rows' gradient sums over all candidates of the group), in fp64, for groups of
// K = 1 and K = 8, several groups of one prefix length (one call), groups of different prefix
// lengths, a group whose candidates are not adjacent, length-1 candidates and GQA.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "dense_blocks.h"
#include "polar/common/error.h"
#include "polar/kernels/attention.h"

namespace polar {
namespace {

using torch::Tensor;

// Blocks in token order; q and k both hold the real tokens (one row each).
struct SharedLayout {
  std::vector<int64_t> q_lens, k_lens, key_index;
  int64_t rows = 0;

  void add_plain(int64_t len) {
    add_block(rows, len, -1, 0);
    rows += len;
  }
  int64_t add_prefix(int64_t len) {  // a group's prefix: a plain block; returns its first row
    add_plain(len);
    return rows - len;
  }
  void add_candidate(int64_t prefix_begin, int64_t prefix_len, int64_t len) {
    add_block(rows, len, prefix_begin, prefix_len);
    rows += len;
  }
  void add_group(int64_t prefix_len, const std::vector<int64_t>& candidate_lens) {
    const int64_t begin = add_prefix(prefix_len);
    for (int64_t len : candidate_lens) add_candidate(begin, prefix_len, len);
  }
  void add_block(int64_t own_begin, int64_t len, int64_t prefix_begin, int64_t prefix_len) {
    for (int64_t j = 0; j < prefix_len; ++j) key_index.push_back(prefix_begin + j);
    for (int64_t j = 0; j < len; ++j) key_index.push_back(own_begin + j);
    q_lens.push_back(len);
    k_lens.push_back(len + prefix_len);
  }
  static Tensor cu(const std::vector<int64_t>& lens) {
    std::vector<int64_t> cu{0};
    for (int64_t l : lens) cu.push_back(cu.back() + l);
    return torch::tensor(cu, torch::kInt64);
  }
  Tensor keys() const { return torch::tensor(key_index, torch::kInt64); }
};

// The dense reference over the gathered keys.
Tensor dense_blocks(const Tensor& q, const Tensor& k, const Tensor& v, const SharedLayout& l) {
  return testutil::dense_blocks(q, k.index_select(0, l.keys()), v.index_select(0, l.keys()),
                                l.q_lens, l.k_lens);
}

void expect_matches_dense(const SharedLayout& l, int64_t kv_heads) {
  SCOPED_TRACE("kv_heads " + std::to_string(kv_heads));
  const auto opts = torch::TensorOptions().dtype(torch::kDouble).requires_grad(true);
  const Tensor q = torch::randn({l.rows, 4, 8}, opts),
               k = torch::randn({l.rows, kv_heads, 8}, opts),
               v = torch::randn({l.rows, kv_heads, 8}, opts);
  const Tensor w = torch::randn({l.rows, 4, 8}, torch::kDouble);  // a random upstream gradient
  const Tensor cu_q = SharedLayout::cu(l.q_lens), cu_k = SharedLayout::cu(l.k_lens);
  const Tensor got = kernels::varlen_attention_padded(q, k, v, cu_q, cu_k, l.keys());
  const auto got_grads = torch::autograd::grad({(got * w).sum()}, {q, k, v});
  const Tensor ref = dense_blocks(q, k, v, l);
  const auto ref_grads = torch::autograd::grad({(ref * w).sum()}, {q, k, v});
  // fp64: only rounding differs.
  EXPECT_TRUE(torch::allclose(got, ref, 1e-10, 1e-12));
  for (size_t i = 0; i < 3; ++i)
    EXPECT_TRUE(torch::allclose(got_grads[i], ref_grads[i], 1e-10, 1e-12)) << "input " << i;
  // The same blocks over keys copied per candidate (no key_index: every candidate its own group).
  const Tensor kg = k.index_select(0, l.keys()), vg = v.index_select(0, l.keys());
  const Tensor copied = kernels::varlen_attention_padded(q, kg, vg, cu_q, cu_k);
  EXPECT_TRUE(torch::allclose(copied, ref, 1e-10, 1e-12));
}

TEST(PrefixGroups, GroupsOfMixedPrefixLengthsMatchGatheredKeys) {
  torch::manual_seed(7);
  SharedLayout l;
  l.add_group(5, {3});                       // K = 1
  l.add_plain(6);                            // a whole sequence between groups
  l.add_group(9, {4, 1, 7, 2, 9, 3, 5, 6});  // K = 8, a length-1 candidate
  l.add_group(7, {5, 2});                    // two groups of one prefix length: one call
  l.add_group(7, {3, 6, 1});
  l.add_group(1, {1});  // length-1 prefix and candidate
  for (int64_t kv_heads : {4, 2, 1}) expect_matches_dense(l, kv_heads);
}

TEST(PrefixGroups, CandidatesApartAndManyGroupsOfOneLength) {
  torch::manual_seed(8);
  SharedLayout l;
  // A group whose candidates are separated by another sequence: its queries are gathered.
  const int64_t begin = l.add_prefix(11);
  l.add_candidate(begin, 11, 4);
  l.add_plain(3);
  l.add_candidate(begin, 11, 6);
  for (int g = 0; g < 6; ++g) {  // groups of one prefix length with 1..8 candidates
    std::vector<int64_t> lens;
    for (int c = 0; c <= (g * 3) % 8; ++c) lens.push_back(1 + (g * 5 + c * 3) % 9);
    l.add_group(6, lens);
  }
  expect_matches_dense(l, 2);
}

TEST(PrefixGroups, LongPrefixesReadInPlaceInFp32) {
  // Prefixes long enough that each group runs alone (its rows read in place); fp32 rounding.
  torch::manual_seed(9);
  SharedLayout l;
  l.add_group(300, {40, 90, 17, 64});
  l.add_group(420, {200});
  l.add_group(301, {5, 8, 130, 22, 61, 9, 3, 77});
  const Tensor q = torch::randn({l.rows, 4, 16}), k = torch::randn({l.rows, 2, 16}),
               v = torch::randn({l.rows, 2, 16});
  const Tensor got = kernels::varlen_attention_padded(q, k, v, SharedLayout::cu(l.q_lens),
                                                      SharedLayout::cu(l.k_lens), l.keys());
  EXPECT_TRUE(torch::allclose(got, dense_blocks(q, k, v, l), 1e-5, 1e-6));
}

TEST(PrefixGroups, RejectsKeyIndexOutOfRange) {
  const Tensor q = torch::randn({4, 2, 8}), k = torch::randn({4, 2, 8});
  const Tensor cu_q = torch::tensor({0, 2, 4}, torch::kInt64);
  const Tensor cu_k = torch::tensor({0, 2, 6}, torch::kInt64);
  EXPECT_THROW(kernels::varlen_attention_padded(q, k, k, cu_q, cu_k,
                                                torch::tensor({0, 1, 0, 1, 2, 4}, torch::kInt64)),
               Error);
}

}  // namespace
}  // namespace polar
