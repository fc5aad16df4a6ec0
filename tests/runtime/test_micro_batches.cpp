// What the packer hands the device and the one micro-batch loop: every index tensor (the
// attention layout and the loss's group CSR included) is a view of one host buffer that moves
// in one copy; the precomputed layout gives bit-identical rewards, loss and gradients to the
// layout derived from the ids; the loop's micro-batches give the rewards of one batch. On a
// GPU, forward + loss + backward run without a host sync (SyncFreeStepGpu; SKIPPED without one).
#include <gtest/gtest.h>
#include <torch/torch.h>

#ifdef POLAR_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <vector>

#include "../model/tiny_model.h"
#include "polar/data/batch.h"
#include "polar/kernels/cuda.h"
#include "polar/loss/polar_loss.h"
#include "polar/model/reward_model.h"
#include "polar/runtime/device.h"
#include "polar/runtime/micro_batches.h"

namespace polar {
namespace {

using testutil::GroupBuilder;
using torch::Tensor;

// Mixed lengths, a group with one candidate only (no pair), rows with padding.
GroupBuilder mixed_groups() {
  GroupBuilder b(23);
  b.add_random(9, {4, 7, 1}, 0);
  b.add_random(3, {5}, 1);
  b.add_random(12, {2, 6}, 2);
  b.add_random(1, {3, 3, 8, 2}, 0);
  return b;
}

TEST(PackedBuffer, EveryIndexTensorIsAViewOfOneBuffer) {
  const GroupBuilder b = mixed_groups();
  for (bool shared : {false, true}) {
    PackedBatch p = pack_groups(b.groups(), {24, 0, shared});
    ASSERT_TRUE(p.storage.defined());
    int64_t total = 0;
    for (Tensor* t : index_tensors(p)) {
      if (!t->defined()) continue;
      EXPECT_TRUE(t->is_alias_of(p.storage));
      total += t->numel();
    }
    EXPECT_EQ(total, p.storage.numel());  // nothing else in it, nothing overlapping
    // The layout is the one derived from the ids.
    const AttentionLayout want = attention_layout(p.segments, p.context);
    EXPECT_TRUE(torch::equal(p.layout.token_index, want.token_index));
    EXPECT_TRUE(torch::equal(p.layout.cu_q, want.cu_q));
    EXPECT_TRUE(torch::equal(p.layout.cu_k, want.cu_k));
    EXPECT_EQ(p.layout.key_index.defined(), want.key_index.defined());
    if (want.key_index.defined()) {
      EXPECT_TRUE(torch::equal(p.layout.key_index, want.key_index));
    }
    EXPECT_EQ(p.layout.max_q, want.max_q);
    EXPECT_EQ(p.layout.max_k, want.max_k);
  }
}

TEST(PackedBuffer, GroupCsrListsThePairsGroupByGroup) {
  const GroupBuilder b = mixed_groups();
  const PackedBatch p = pack_groups(b.groups(), {24, 0, false});
  // Groups 0, 2 and 3 have pairs (group 1 has one candidate); rewards 0..2 | 3 | 4, 5 | 6..9.
  EXPECT_TRUE(torch::equal(p.pos_index, torch::tensor({0, 4, 6}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(p.neg_offsets, torch::tensor({0, 2, 3, 6}, torch::kInt64)));
  const Tensor counts = p.neg_offsets.slice(0, 1) - p.neg_offsets.slice(0, 0, -1);
  EXPECT_TRUE(torch::equal(p.pos_index.repeat_interleave(counts), p.pair_pos));
}

TEST(PackedBuffer, OneCopyRoundTrips) {
  const GroupBuilder b = mixed_groups();
  const PackedBatch p = pack_groups(b.groups(), {24, 0, true});
  const PackedBatch moved = with_storage(p, p.storage.clone());  // what to_device does on CUDA
  PackedBatch original = p, copy = moved;
  const auto a = index_tensors(original), c = index_tensors(copy);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i]->defined(), c[i]->defined()) << i;
    if (!a[i]->defined()) continue;
    EXPECT_TRUE(torch::equal(*a[i], *c[i])) << i;
    EXPECT_TRUE(c[i]->is_alias_of(moved.storage)) << i;
    EXPECT_FALSE(c[i]->is_alias_of(p.storage)) << i;
  }
  EXPECT_TRUE(to_device(p, torch::kCPU).tokens.is_same(p.tokens));  // the CPU takes it as is
}

// Rewards, loss and every gradient of a batch through the model's own derivation of the layout
// (the path without a packer) and through the packer's layout.
struct PathRun {
  Tensor rewards, loss;
  std::vector<Tensor> grads;
};

PathRun run_path(RewardModel& model, const PackedBatch& batch, bool packed_layout) {
  model->zero_grad();
  PathRun r;
  r.rewards = packed_layout ? model->forward(batch)
                            : model->forward(batch.tokens, batch.positions, batch.segments,
                                             batch.reward_index, batch.context);
  LossOptions options;
  options.margin = 0.1;
  options.center_coef = 0.01;
  r.loss = pair_loss(r.rewards, batch, 7.0, options, /*fused=*/false).loss;
  r.loss.backward();
  for (const auto& p : model->parameters()) r.grads.push_back(p.grad().clone());
  return r;
}

TEST(PrecomputedLayout, RewardsLossAndGradientsAreIdentical) {
  const GroupBuilder b = mixed_groups();
  RewardModel model = testutil::tiny_model(testutil::tiny_config(2, true));
  for (AttentionImpl impl : {AttentionImpl::Blocks, AttentionImpl::Math}) {
    for (bool shared : {false, true}) {
      SCOPED_TRACE(::testing::Message() << (impl == AttentionImpl::Blocks ? "blocks" : "math")
                                        << (shared ? " shared" : ""));
      model->set_attention_impl(impl);
      const PackedBatch batch = pack_groups(b.groups(), {24, 0, shared});
      const PathRun derived = run_path(model, batch, false), packed = run_path(model, batch, true);
      EXPECT_TRUE(torch::equal(derived.rewards, packed.rewards));
      EXPECT_TRUE(torch::equal(derived.loss, packed.loss));
      ASSERT_EQ(derived.grads.size(), packed.grads.size());
      for (size_t i = 0; i < derived.grads.size(); ++i)
        EXPECT_TRUE(torch::equal(derived.grads[i], packed.grads[i]));
    }
  }
}

TEST(PairLossEntry, ThePackedBatchsPairsGiveTheReference) {
  const GroupBuilder b = mixed_groups();
  const PackedBatch batch = pack_groups(b.groups(), {24, 0, false});
  torch::manual_seed(3);
  const Tensor rewards = torch::randn({batch.n_sequences}, torch::kDouble);
  const PairLoss got = pair_loss(rewards, batch, 9.0, {}, /*fused=*/true);  // CPU: the reference
  const PairLoss want = pair_loss_reference(rewards, batch.pair_pos, batch.pair_neg, 9.0, {});
  EXPECT_TRUE(torch::equal(got.loss, want.loss));
  EXPECT_TRUE(torch::equal(got.stats, want.stats));
  EXPECT_EQ(got.n_pairs, 6);
  const PairCounts counts = read_pair_counts(got.stats + want.stats);  // summable, read once
  EXPECT_DOUBLE_EQ(counts.loss_sum, 2 * want.loss_sum());
  EXPECT_EQ(counts.n_correct, 2 * want.n_correct());
}

TEST(MicroBatchLoop, MicroBatchesGiveTheRewardsOfOneBatch) {
  const GroupBuilder b = mixed_groups();
  RewardModel model = testutil::tiny_model(testutil::tiny_config());
  torch::NoGradGuard no_grad;
  MicroBatchOptions one, several;
  one.pack = several.pack = PackOptions{24, 0, true};
  several.token_budget = 20;  // a micro-batch per group or two
  std::vector<Tensor> whole, parts;
  size_t seen = 0;
  EXPECT_EQ(for_each_micro_batch(model, b.groups(), one,
                                 [&](const MicroBatch& mb) { whole.push_back(mb.rewards); }),
            1u);
  const size_t n = for_each_micro_batch(model, b.groups(), several, [&](const MicroBatch& mb) {
    EXPECT_EQ(mb.index, seen++);
    EXPECT_EQ(mb.last(), mb.index + 1 == mb.count);
    EXPECT_EQ(mb.rewards.scalar_type(), torch::kFloat);
    EXPECT_EQ(mb.rewards.size(0), mb.batch.n_sequences);
    parts.push_back(mb.rewards);
  });
  EXPECT_GT(n, 2u);
  EXPECT_EQ(seen, n);
  // Other rows, so another summation order inside attention: fp32 rounding only (rewards of
  // order 1 after two layers differ by up to ~2e-6).
  EXPECT_TRUE(torch::allclose(torch::cat(parts), whole[0], 1e-5, 1e-5))
      << "largest difference " << (torch::cat(parts) - whole[0]).abs().max().item<double>();
}

// Forward, loss and backward of a packed micro-batch on the GPU with CUDA's sync debug mode set
// to raise: any host sync (a .item(), nonzero, a blocking copy) between them fails the test.
TEST(SyncFreeStepGpu, ForwardLossBackwardNeverSync) {
#ifdef POLAR_WITH_CUDA
  if (!torch::cuda::is_available() || !kernels::cuda_kernels_available()) {
    GTEST_SKIP() << "needs a CUDA device and the kernels compiled in (POLAR_WITH_CUDA)";
  }
  const GroupBuilder b = mixed_groups();
  RewardModel model = testutil::tiny_model(testutil::tiny_config(2, true));
  model->to(torch::kCUDA);
  model->set_fused_head(true);
  for (bool shared : {false, true}) {
    PackOptions pack{24, 0, shared};
    pack.pinned = true;
    const PackedBatch batch = to_device(pack_groups(b.groups(), pack), torch::kCUDA);
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
    try {
      const PairLoss loss = pair_loss(model->forward(batch), batch, 6.0, {}, /*fused=*/true);
      loss.loss.backward();
    } catch (...) {
      c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
      ADD_FAILURE() << "a host sync between the forward and backward() (shared prefix " << shared
                    << ")";
      throw;
    }
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
  }
#else
  GTEST_SKIP() << "needs the kernels compiled in (POLAR_WITH_CUDA)";
#endif
}

}  // namespace
}  // namespace polar
