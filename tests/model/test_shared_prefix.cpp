// Shared-prefix groups: the packed layout (prefix once, candidates continuing its positions),
// the attention blocks derived from it, and exactness of rewards, loss and every gradient
// against the separate-sequence layout, for K = 1..8 negatives, mixed lengths, truncated
// groups and rows holding several groups, under both the block and the dense-mask attention.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/tiny_data.h"
#include "polar/common/error.h"
#include "polar/data/attention_layout.h"
#include "polar/data/batch.h"
#include "polar/loss/polar_loss.h"
#include "polar/model/reward_model.h"
#include "polar/tokenizer/template.h"
#include "polar/tokenizer/tokenizer.h"
#include "tiny_model.h"

namespace polar {
namespace {

using testutil::GroupBuilder;
using torch::Tensor;

std::vector<int64_t> ints(const Tensor& t) {
  const Tensor c = t.contiguous().to(torch::kInt64);
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

TEST(SharedPrefixLayout, ByHand) {
  GroupBuilder b;
  b.add({11, 12, 13}, {{21, 22}, {31}, {41, 42, 43}});  // 3 + 6 = 9 tokens shared, 15 separate
  b.add({51}, {{61}, {71, 72}});                        // 1 + 3 = 4 shared
  const PackedBatch p = pack_groups(b.groups(), {10, 0, true});
  ASSERT_EQ(p.tokens.sizes(), (std::vector<int64_t>{2, 9}));
  EXPECT_EQ(ints(p.tokens[0]), (std::vector<int64_t>{11, 12, 13, 21, 22, 31, 41, 42, 43}));
  EXPECT_EQ(ints(p.positions[0]), (std::vector<int64_t>{0, 1, 2, 3, 4, 3, 3, 4, 5}));
  EXPECT_EQ(ints(p.segments[0]), (std::vector<int64_t>{1, 1, 1, 2, 2, 3, 4, 4, 4}));
  EXPECT_EQ(ints(p.context[0]), (std::vector<int64_t>{0, 0, 0, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(ints(p.tokens[1]), (std::vector<int64_t>{51, 61, 71, 72, 0, 0, 0, 0, 0}));
  EXPECT_EQ(ints(p.positions[1]), (std::vector<int64_t>{0, 1, 1, 2, 0, 0, 0, 0, 0}));
  EXPECT_EQ(ints(p.segments[1]), (std::vector<int64_t>{1, 2, 3, 3, 0, 0, 0, 0, 0}));
  EXPECT_EQ(ints(p.context[1]), (std::vector<int64_t>{0, 1, 1, 1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(ints(p.reward_index), (std::vector<int64_t>{4, 5, 8, 10, 12}));  // group order
  EXPECT_EQ(ints(p.pair_pos), (std::vector<int64_t>{0, 0, 3}));
  EXPECT_EQ(ints(p.pair_neg), (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(p.n_tokens, 13);
  EXPECT_EQ(group_tokens(b.groups()[0], true), 9);
  EXPECT_EQ(group_tokens(b.groups()[0], false), 15);
  EXPECT_FALSE(pack_groups(b.groups(), {10, 0, false}).context.defined());
}

TEST(SharedPrefixLayout, EmptyPrefixOrCandidate) {
  GroupBuilder b;
  b.add({}, {{21, 22}, {31}});  // no prefix: the candidates are plain sequences
  b.add({5, 6}, {{}, {7}});     // an empty candidate's reward is read at the prefix's end
  const PackedBatch p = pack_groups(b.groups(), {16, 0, true});
  ASSERT_EQ(p.tokens.size(0), 1);
  EXPECT_EQ(ints(p.tokens[0]), (std::vector<int64_t>{21, 22, 31, 5, 6, 7}));
  EXPECT_EQ(ints(p.context[0]), (std::vector<int64_t>{0, 0, 0, 0, 0, 3}));
  EXPECT_EQ(ints(p.reward_index), (std::vector<int64_t>{1, 2, 4, 5}));
}

TEST(SharedPrefixLayout, MicroBatchesCountComputedTokens) {
  GroupBuilder b;
  for (int i = 0; i < 4; ++i)
    b.add_random(10, {5, 5, 5});  // 25 computed tokens shared, 45 separate
  using R = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(split_micro_batches(b.groups(), 60, true), (R{{0, 2}, {2, 4}}));
  EXPECT_EQ(split_micro_batches(b.groups(), 60, false), (R{{0, 1}, {1, 2}, {2, 3}, {3, 4}}));
}

TEST(AttentionLayout, BlocksOfASharedRow) {
  GroupBuilder b;
  b.add({11, 12, 13}, {{21, 22}, {31}});
  const PackedBatch p = pack_groups(b.groups(), {8, 0, true});  // width 6, padding none
  const AttentionLayout l = attention_layout(p.segments, p.context);
  EXPECT_TRUE(l.all_tokens);
  EXPECT_EQ(ints(l.cu_q), (std::vector<int64_t>{0, 3, 5, 6}));
  EXPECT_EQ(ints(l.cu_k), (std::vector<int64_t>{0, 3, 8, 12}));
  EXPECT_EQ(ints(l.key_index), (std::vector<int64_t>{0, 1, 2, 0, 1, 2, 3, 4, 0, 1, 2, 5}));
  EXPECT_EQ(l.max_q, 3);
  EXPECT_EQ(l.max_k, 5);
  const AttentionLayout plain = attention_layout(p.segments, Tensor());
  EXPECT_FALSE(plain.key_index.defined());
  EXPECT_EQ(ints(plain.cu_k), ints(plain.cu_q));
}

TEST(AttentionLayout, RejectsBadContext) {
  const Tensor segments = torch::tensor({1, 1, 2, 2, 0}, torch::kInt64).view({1, 5});
  EXPECT_THROW(
      attention_layout(segments, torch::tensor({0, 0, 3, 3, 0}, torch::kInt64).view({1, 5})),
      Error);
  EXPECT_THROW(
      attention_layout(segments, torch::tensor({0, 0, 1, 0, 0}, torch::kInt64).view({1, 5})),
      Error);
  EXPECT_THROW(attention_layout(torch::tensor({1, 2, 1}, torch::kInt64).view({1, 3}), Tensor()),
               Error);
  EXPECT_THROW(attention_layout(segments, torch::zeros({1, 4}, torch::kInt64)), Error);
  // A candidate may only see an earlier segment of its row.
  const Tensor later = torch::tensor({1, 1, 2, 2, 0}, torch::kInt64).view({1, 5});
  EXPECT_THROW(attention_layout(later, torch::tensor({2, 2, 0, 0, 0}, torch::kInt64).view({1, 5})),
               Error);
}

// Rewards, loss and every parameter's gradient of one forward/backward.
struct PassResult {
  Tensor rewards, loss;
  std::vector<Tensor> grads;
};

PassResult run(RewardModel& model, const std::vector<GroupRef>& groups, PackOptions pack,
               AttentionImpl impl) {
  model->zero_grad();
  model->set_attention_impl(impl);
  const PackedBatch batch = pack_groups(groups, pack);
  PassResult out;
  out.rewards = model->forward(batch);
  const LossOptions options{0.3, 0.05};  // margin and centering so every term is exercised
  out.loss = pair_loss_reference(out.rewards, batch.pair_pos, batch.pair_neg, 7, options).loss;
  out.loss.backward();
  out.grads = testutil::gradients(model);
  return out;
}

// Largest difference relative to the reference's largest magnitude (fp32 ~1e-7 expected).
double max_rel_diff(const Tensor& a, const Tensor& ref) {
  const Tensor x = a.detach().to(torch::kDouble), y = ref.detach().to(torch::kDouble);
  return (x - y).abs().max().item<double>() / std::max(y.abs().max().item<double>(), 1e-12);
}

void expect_same_run(const PassResult& got, const PassResult& ref, RewardModel& model,
                     const std::string& what) {
  // fp32: the same sums in other matmul shapes and orders round differently (~1e-7 relative).
  constexpr double kTol = 1e-5;
  EXPECT_LT(max_rel_diff(got.rewards, ref.rewards), kTol) << what;
  EXPECT_LT(max_rel_diff(got.loss, ref.loss), kTol) << what;
  const auto names = model->named_parameters().keys();
  ASSERT_EQ(got.grads.size(), ref.grads.size());
  for (size_t i = 0; i < ref.grads.size(); ++i)
    EXPECT_LT(max_rel_diff(got.grads[i], ref.grads[i]), kTol) << what << " " << names[i];
}

// Groups whose prompt is cut from the left and whose responses are cut on the right by the
// template, as `polar data` builds them from over-long records.
void add_truncated_groups(GroupBuilder& b, int64_t negatives, uint32_t seed) {
  static const Tokenizer tok = Tokenizer::load(testing::tiny_tokenizer_dir());
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(5, std::min<int32_t>(tok.vocab_size(), 500) - 1);
  const auto ids = [&](int64_t n) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (auto& t : v) t = id(rng);
    return v;
  };
  for (TemplateKind kind : {TemplateKind::Pretrain, TemplateKind::Finetune}) {
    std::vector<std::vector<int32_t>> candidates;
    for (int64_t k = 0; k <= negatives; ++k) candidates.push_back(ids(8 + 9 * k % 25));
    const auto group =
        encode_group(tok, kind, ids(40), ids(30), candidates, TemplateLimits{70, 20});
    ASSERT_TRUE(group.has_value());
    ASSERT_GT(group->prompt_tokens_cut + group->response_tokens_cut, 0);
    std::vector<std::vector<int32_t>> cands(group->candidates.begin(), group->candidates.end());
    b.add(group->prefix, cands, 1);
  }
}

// The shared layout (blocks, dense mask, one long row) against separate sequences under the
// dense mask, and the separate layout under the blocks.
void expect_shared_equals_separate(RewardModel& model, const GroupBuilder& b) {
  const int64_t row = 96;
  const PassResult ref =
      run(model, b.groups(), {row, 0, false}, AttentionImpl::Math);         // dense mask, separate
  ASSERT_GT((ref.rewards.max() - ref.rewards.min()).item<double>(), 0.05);  // rewards really differ
  expect_same_run(run(model, b.groups(), {row, 0, true}, AttentionImpl::Auto), ref, model,
                  "shared, blocks");
  expect_same_run(run(model, b.groups(), {row, 0, true}, AttentionImpl::Math), ref, model,
                  "shared, dense mask");
  expect_same_run(run(model, b.groups(), {row, 0, false}, AttentionImpl::Blocks), ref, model,
                  "separate, blocks");
  expect_same_run(run(model, b.groups(), {4096, 0, true}, AttentionImpl::Auto), ref, model,
                  "shared, one row");
}

void check_shared_prefix(const ModelConfig& config, int64_t negatives) {
  RewardModel model = testutil::tiny_model(config);
  GroupBuilder b(static_cast<uint32_t>(100 + negatives));
  std::mt19937 rng(static_cast<uint32_t>(negatives));
  std::uniform_int_distribution<int64_t> prefix_len(1, 40), cand_len(1, 24);
  for (int g = 0; g < 4; ++g) {  // mixed lengths; several groups share a row
    std::vector<int64_t> lens;
    for (int64_t k = 0; k <= negatives; ++k) lens.push_back(cand_len(rng));
    b.add_random(prefix_len(rng), lens, g % 2);
  }
  b.add_random(70,
               std::vector<int64_t>(static_cast<size_t>(negatives + 1), 20));  // longer than a row
  add_truncated_groups(b, negatives, static_cast<uint32_t>(negatives));
  if (::testing::Test::HasFailure()) return;

  expect_shared_equals_separate(model, b);
}

class SharedPrefixExact : public ::testing::TestWithParam<int64_t> {};

TEST_P(SharedPrefixExact, RewardsLossAndGradientsEqualSeparateSequences) {
  check_shared_prefix(testutil::tiny_config(2, true), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Negatives, SharedPrefixExact, ::testing::Range<int64_t>(1, 9));

// Qwen3's q/k norms and explicit head_dim, and llama3 RoPE, through the same block paths.
TEST(SharedPrefixExactFamilies, Qwen3AndLlama3) {
  for (const ModelConfig& c : {testutil::tiny_qwen3_config(), testutil::tiny_llama3_config(1)}) {
    SCOPED_TRACE(c.to_json().dump());
    check_shared_prefix(c, 3);
  }
}

// Groups of one prefix length (their candidates attend to their prefixes in one call) beside
// groups of other lengths, with K = 1 and K = 8, in one step.
TEST(SharedPrefixExactBuckets, GroupsOfOnePrefixLengthAndOthers) {
  RewardModel model = testutil::tiny_model(testutil::tiny_config(2, true));
  GroupBuilder b(31);
  b.add_random(12, {5, 3});
  b.add_random(12, {3, 9, 1, 7, 4, 6, 2, 8, 5});
  b.add_random(12, {10, 4});
  b.add_random(25, {6, 6});
  b.add_random(7, {11, 2, 5, 9, 3, 1, 4, 8, 6});
  b.add_random(7, {2, 4});
  expect_shared_equals_separate(model, b);
}

TEST(SharedPrefixLayout, ComputesFewerTokens) {
  GroupBuilder b;
  b.add_random(50, {10, 10, 10, 10, 10});
  EXPECT_EQ(pack_groups(b.groups(), {512, 0, true}).n_tokens, 100);
  EXPECT_EQ(pack_groups(b.groups(), {512, 0, false}).n_tokens, 300);
}

}  // namespace
}  // namespace polar
