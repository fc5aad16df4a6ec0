// pack_groups (first-fit decreasing rows, restarting positions, reward indices, pairs) and
// split_micro_batches (token budget, whole groups only).
#include <gtest/gtest.h>

#include <random>

#include "../model/tiny_model.h"
#include "polar/common/error.h"
#include "polar/data/batch.h"

namespace polar {
namespace {

using testutil::GroupBuilder;
using torch::Tensor;

std::vector<int64_t> vec(const Tensor& t) {
  const Tensor c = t.contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

TEST(PackedBatch, LayoutByHand) {
  GroupBuilder b;
  b.add({1, 2}, {{3, 4, 5}, {6}}, 0);  // sequences of 5 and 3
  b.add({7}, {{8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}, {19, 20}, {21}}, 4);  // 12, 3, 2
  const PackedBatch p = pack_groups(b.groups(), {10, 0});
  // Decreasing: 12 (too long: own row 0), 5 -> row 1, 3 -> row 1, 3 -> row 2 (row 1 has 2
  // left), 2 -> row 1. T = the longest row = 12.
  ASSERT_EQ(p.tokens.sizes(), (std::vector<int64_t>{3, 12}));
  EXPECT_EQ(vec(p.tokens), (std::vector<int64_t>{7, 8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18,  //
                                                 1, 2,  3,  4,  5,  1,  2,  6,  7,  21, 0,  0,   //
                                                 7, 19, 20, 0,  0,  0,  0,  0,  0,  0,  0,  0}));
  EXPECT_EQ(vec(p.positions), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,  //
                                                    0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 0,  0,   //
                                                    0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0,  0}));
  EXPECT_EQ(vec(p.segments), (std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                                   1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 0, 0,  //
                                                   1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  // Rewards in group order: g0c0 (row 1, last at 4), g0c1 (row 1, 7), g1c0 (row 0, 11),
  // g1c1 (row 2, 2), g1c2 (row 1, 9).
  EXPECT_EQ(vec(p.reward_index), (std::vector<int64_t>{16, 19, 11, 26, 21}));
  EXPECT_EQ(vec(p.pair_pos), (std::vector<int64_t>{0, 2, 2}));
  EXPECT_EQ(vec(p.pair_neg), (std::vector<int64_t>{1, 3, 4}));
  EXPECT_EQ(vec(p.pair_category), (std::vector<int64_t>{0, 4, 4}));
  EXPECT_EQ(p.n_sequences, 5);
  EXPECT_EQ(p.n_pairs, 3);
  EXPECT_EQ(p.n_tokens, 25);
  // The pad id is used for padding only.
  EXPECT_EQ(pack_groups(b.groups(), {10, 99}).tokens[2][3].item<int64_t>(), 99);
}

TEST(PackedBatch, RandomGroupsKeepEveryInvariant) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int64_t> len(0, 40), n_cand(1, 4);
  GroupBuilder b(6);
  for (int g = 0; g < 40; ++g) {
    std::vector<int64_t> cands(n_cand(rng));
    for (auto& c : cands) c = 1 + len(rng);
    b.add_random(len(rng), cands, g % 3);
  }
  const int64_t row_tokens = 64;
  const PackedBatch p = pack_groups(b.groups(), {row_tokens, 0});
  const PackedBatch again = pack_groups(b.groups(), {row_tokens, 0});
  EXPECT_TRUE(torch::equal(p.tokens, again.tokens));  // deterministic
  EXPECT_TRUE(torch::equal(p.reward_index, again.reward_index));

  const int64_t B = p.tokens.size(0), T = p.tokens.size(1);
  const auto segments = vec(p.segments), positions = vec(p.positions), tokens = vec(p.tokens);
  const auto reward_index = vec(p.reward_index);
  int64_t longest_row = 0, real = 0;
  for (int64_t r = 0; r < B; ++r) {
    int64_t used = 0, max_segment = 0, n_segments = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t s = segments[r * T + t];
      if (s == 0) {
        EXPECT_EQ(positions[r * T + t], 0);
        continue;
      }
      ++used;
      if (s != max_segment) {  // segments run 1, 2, 3, ... and each starts at position 0
        EXPECT_EQ(s, max_segment + 1);
        EXPECT_EQ(positions[r * T + t], 0);
        max_segment = s;
        ++n_segments;
      } else {
        EXPECT_EQ(positions[r * T + t], positions[r * T + t - 1] + 1);
      }
    }
    // Padding only at the end of a row.
    for (int64_t t = used; t < T; ++t) EXPECT_EQ(segments[r * T + t], 0);
    EXPECT_TRUE(used <= row_tokens || n_segments == 1) << "row " << r << " holds " << used;
    longest_row = std::max(longest_row, used);
    real += used;
  }
  EXPECT_EQ(longest_row, T);
  EXPECT_EQ(real, p.n_tokens);
  // Every sequence sits intact ending at its reward index, in group/candidate order.
  size_t i = 0;
  int64_t pairs = 0;
  for (const GroupRef& g : b.groups()) {
    for (size_t c = 0; c < g.candidates.size(); ++c, ++i) {
      const auto seq = testutil::sequence_of(g, c);
      const int64_t end = reward_index[i], n = static_cast<int64_t>(seq.size());
      ASSERT_EQ(positions[end], n - 1);
      for (int64_t k = 0; k < n; ++k)
        ASSERT_EQ(tokens[end - n + 1 + k], seq[k]) << "sequence " << i;
    }
    pairs += static_cast<int64_t>(g.candidates.size()) - 1;
  }
  EXPECT_EQ(p.n_sequences, static_cast<int64_t>(i));
  EXPECT_EQ(p.n_pairs, pairs);
}

TEST(PackedBatch, RejectsBadInput) {
  GroupBuilder b;
  b.add({1}, {{2}}, 0);
  EXPECT_THROW(pack_groups(b.groups(), {0, 0}), Error);
  EXPECT_THROW(pack_groups({}, {16, 0}), Error);
  GroupBuilder no_candidates;
  no_candidates.add({1, 2}, {}, 0);
  EXPECT_THROW(pack_groups(no_candidates.groups(), {16, 0}), Error);
  GroupBuilder empty_sequence;
  empty_sequence.add({}, {{3}, {}}, 0);
  EXPECT_THROW(pack_groups(empty_sequence.groups(), {16, 0}), Error);
}

TEST(MicroBatches, ByHand) {
  GroupBuilder b;
  // total_tokens: 10, 20, 5, 50, 3, 3
  b.add({}, {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}, 0);
  b.add(std::vector<int32_t>(5, 1), {std::vector<int32_t>(5, 2), std::vector<int32_t>(5, 3)}, 0);
  b.add({1, 2}, {{3, 4, 5}}, 0);
  b.add(std::vector<int32_t>(20, 1), {std::vector<int32_t>(5, 2), std::vector<int32_t>(5, 3)}, 0);
  b.add({1}, {{2, 3}}, 0);
  b.add({}, {{2, 3, 4}}, 0);
  using R = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(split_micro_batches(b.groups(), 30), (R{{0, 2}, {2, 3}, {3, 4}, {4, 6}}));
  EXPECT_EQ(split_micro_batches(b.groups(), 1000), (R{{0, 6}}));
  EXPECT_EQ(split_micro_batches(b.groups(), 1),
            (R{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}}));
  EXPECT_TRUE(split_micro_batches({}, 30).empty());
  EXPECT_THROW(split_micro_batches(b.groups(), 0), Error);
}

TEST(MicroBatches, RespectBudgetAndCoverAllGroups) {
  std::mt19937 rng(8);
  std::uniform_int_distribution<int64_t> len(1, 30), n_cand(1, 5);
  GroupBuilder b(9);
  for (int g = 0; g < 100; ++g) {
    std::vector<int64_t> cands(n_cand(rng));
    for (auto& c : cands) c = len(rng);
    b.add_random(len(rng), cands, 0);
  }
  for (int64_t budget : {50, 128, 400}) {
    const auto ranges = split_micro_batches(b.groups(), budget);
    int64_t expected_begin = 0;
    for (const auto& [begin, end] : ranges) {
      EXPECT_EQ(begin, expected_begin);  // consecutive, whole groups, nothing skipped
      ASSERT_LT(begin, end);
      int64_t tokens = 0;
      for (int64_t g = begin; g < end; ++g) tokens += b.groups()[g].total_tokens();
      EXPECT_TRUE(tokens <= budget || end - begin == 1) << budget << ": " << tokens;
      // Greedy: the next group would not have fitted.
      if (end < 100) {
        EXPECT_GT(tokens + b.groups()[end].total_tokens(), budget);
      }
      expected_begin = end;
    }
    EXPECT_EQ(expected_begin, 100);
  }
}

}  // namespace
}  // namespace polar
