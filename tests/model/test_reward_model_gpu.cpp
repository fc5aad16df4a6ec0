// RewardModel on CUDA: the plain path matches the CPU, the fused reward head matches the plain
// head, varlen (flash) attention matches the masked SDPA path in bf16 (forward and gradients),
// packed == alone, and checkpointing works with varlen. Suites are *Gpu* (ctest label `gpu`)
// and report SKIPPED without a CUDA device or without the kernels compiled in.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "polar/common/error.h"
#include "polar/data/batch.h"
#include "polar/kernels/fused.h"
#include "polar/loss/polar_loss.h"
#include "polar/model/reward_model.h"
#include "tiny_model.h"

namespace polar {
namespace {

using testutil::GroupBuilder;
using torch::Tensor;

class RewardModelGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available() || !kernels::cuda_kernels_available()) {
      GTEST_SKIP() << "needs a CUDA device and the kernels compiled in (POLAR_WITH_CUDA)";
    }
  }
};

double rel_err(const Tensor& a, const Tensor& b) {
  const Tensor x = a.detach().to(torch::kCPU, torch::kDouble), y = b.detach().to(torch::kCPU, torch::kDouble);
  return (x - y).norm().item<double>() / std::max(y.norm().item<double>(), 1e-30);
}

// Groups of mixed lengths, some longer than a 64-token row.
GroupBuilder mixed_groups() {
  GroupBuilder builder(17);
  builder.add_random(40, {25, 3, 60}, 0);
  builder.add_random(5, {1, 12}, 0);
  builder.add_random(90, {30, 7}, 1);
  builder.add_random(2, {2, 9, 4, 1}, 0);
  return builder;
}

TEST_F(RewardModelGpu, PlainAndFusedPathsMatchCpu) {
  const GroupBuilder builder = mixed_groups();
  const PackedBatch batch = pack_groups(builder.groups(), {64, 0});
  RewardModel model = testutil::tiny_model(testutil::tiny_config(2, true));
  const Tensor cpu = model->forward(batch);
  model->to(torch::kCUDA);
  model->set_fused_head(false);
  const Tensor plain = model->forward(batch);
  ASSERT_TRUE(plain.is_cuda());
  // fp32 on both; cuBLAS/SDPA reduce in another order: ~1e-6.
  EXPECT_LT(rel_err(plain, cpu), 1e-5);
  std::printf("[gpu] fp32 CUDA vs CPU rewards: rel err %.3g\n", rel_err(plain, cpu));
  model->set_fused_head(true);
  const Tensor fused = model->forward(batch);
  EXPECT_EQ(fused.scalar_type(), torch::kFloat);
  EXPECT_LT(rel_err(fused, plain), 1e-5);
  std::printf("[gpu] fused vs plain reward head: rel err %.3g\n", rel_err(fused, plain));
  // fp32 has no flash kernel: varlen refuses instead of silently running something else.
  model->set_attention_impl(AttentionImpl::Varlen);
  EXPECT_THROW(model->forward(batch), Error);
}

// Loss, rewards and gradients of one bf16 CUDA model under the given attention.
struct RunResult {
  Tensor rewards;
  std::vector<Tensor> grads;
};

RunResult run_bf16(const ModelConfig& config, const PackedBatch& batch, AttentionImpl impl,
                   bool checkpointing) {
  RewardModel model = testutil::tiny_model(config);
  model->to(torch::kCUDA, torch::kBFloat16);
  model->set_attention_impl(impl);
  model->set_activation_checkpointing(checkpointing);
  RunResult out;
  out.rewards = model->forward(batch);
  polar_pair_loss(out.rewards, batch.pair_pos, batch.pair_neg, batch.n_pairs, {}).loss.backward();
  for (const auto& p : model->parameters()) out.grads.push_back(p.grad().to(torch::kFloat).cpu());
  return out;
}

TEST_F(RewardModelGpu, VarlenMatchesMaskedAttentionInBf16) {
  const GroupBuilder builder = mixed_groups();
  const PackedBatch batch = pack_groups(builder.groups(), {64, 0});
  for (int64_t kv_heads : {4, 2, 1}) {
    const ModelConfig config = testutil::tiny_config(kv_heads, kv_heads == 2);
    const RunResult math = run_bf16(config, batch, AttentionImpl::Math, false);
    const RunResult varlen = run_bf16(config, batch, AttentionImpl::Varlen, false);
    // bf16 activations (8 bits of mantissa) through two layers: ~1e-2 relative.
    EXPECT_LT(rel_err(varlen.rewards, math.rewards), 2e-2) << "kv_heads " << kv_heads;
    double worst_grad = 0;
    for (size_t i = 0; i < math.grads.size(); ++i) {
      worst_grad = std::max(worst_grad, rel_err(varlen.grads[i], math.grads[i]));
      EXPECT_LT(rel_err(varlen.grads[i], math.grads[i]), 5e-2) << "kv_heads " << kv_heads << " param " << i;
    }
    std::printf("[gpu] bf16 varlen vs masked SDPA, kv_heads %ld: rewards %.3g, worst gradient %.3g\n",
                static_cast<long>(kv_heads), rel_err(varlen.rewards, math.rewards), worst_grad);
    const RunResult checkpointed = run_bf16(config, batch, AttentionImpl::Varlen, true);
    EXPECT_LT(rel_err(checkpointed.rewards, varlen.rewards), 1e-6);
    for (size_t i = 0; i < varlen.grads.size(); ++i) {
      EXPECT_LT(rel_err(checkpointed.grads[i], varlen.grads[i]), 1e-2) << "checkpointed param " << i;
    }
  }
}

TEST_F(RewardModelGpu, VarlenPackedEqualsAlone) {
  const GroupBuilder builder = mixed_groups();
  RewardModel model = testutil::tiny_model(testutil::tiny_config(2, true));
  // Reference: each sequence alone, fp32 on the CPU.
  std::vector<double> alone;
  for (const GroupRef& g : builder.groups())
    for (size_t c = 0; c < g.candidates.size(); ++c)
      alone.push_back(testutil::reward_alone(model, testutil::sequence_of(g, c)).item<double>());
  const Tensor expected = torch::tensor(alone, torch::kDouble);
  model->to(torch::kCUDA, torch::kBFloat16);
  model->set_attention_impl(AttentionImpl::Varlen);
  torch::NoGradGuard no_grad;
  for (int64_t row_tokens : {64, 160, 1024}) {
    const Tensor rewards = model->forward(pack_groups(builder.groups(), {row_tokens, 0}));
    EXPECT_LT(rel_err(rewards, expected), 3e-2) << "row_tokens " << row_tokens;
    std::printf("[gpu] bf16 varlen packed (row %ld) vs fp32 alone: rel err %.3g\n", static_cast<long>(row_tokens),
                rel_err(rewards, expected));
  }
}

}  // namespace
}  // namespace polar
