// RewardModel on CUDA: the plain path matches the CPU, the fused reward head matches the plain
// head, varlen (flash) attention matches the masked SDPA path in bf16 (forward and gradients),
// packed == alone, checkpointing works with varlen, and shared-prefix groups match their fp32
// reference. Suites are *Gpu* (ctest label `gpu`) and report SKIPPED without a CUDA device or
// without the kernels compiled in.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "polar/common/error.h"
#include "polar/data/batch.h"
#include "polar/kernels/attention.h"
#include "polar/kernels/cuda.h"
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
  const Tensor x = a.detach().to(torch::kCPU, torch::kDouble),
               y = b.detach().to(torch::kCPU, torch::kDouble);
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
  pair_loss_reference(out.rewards, batch.pair_pos, batch.pair_neg, batch.n_pairs, {})
      .loss.backward();
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
      EXPECT_LT(rel_err(varlen.grads[i], math.grads[i]), 5e-2)
          << "kv_heads " << kv_heads << " param " << i;
    }
    std::printf(
        "[gpu] bf16 varlen vs masked SDPA, kv_heads %ld: rewards %.3g, worst gradient %.3g\n",
        static_cast<long>(kv_heads), rel_err(varlen.rewards, math.rewards), worst_grad);
    const RunResult checkpointed = run_bf16(config, batch, AttentionImpl::Varlen, true);
    EXPECT_LT(rel_err(checkpointed.rewards, varlen.rewards), 1e-6);
    for (size_t i = 0; i < varlen.grads.size(); ++i) {
      EXPECT_LT(rel_err(checkpointed.grads[i], varlen.grads[i]), 1e-2)
          << "checkpointed param " << i;
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
    std::printf("[gpu] bf16 varlen packed (row %ld) vs fp32 alone: rel err %.3g\n",
                static_cast<long>(row_tokens), rel_err(rewards, expected));
  }
}

// Shared-prefix groups: flash over blocks with fewer queries than keys (bottom-right causal)
// against the block reference, and a bf16 model on the shared layout against fp32 CPU.
TEST_F(RewardModelGpu, SharedPrefixFlashBlocksMatchReference) {
  torch::manual_seed(5);
  // Prefix blocks (lq == lk) and candidate blocks over their prefix (lq < lk), odd sizes, length 1.
  const std::vector<int64_t> q_lens{37, 5, 1, 64, 130, 17, 3}, k_lens{37, 42, 38, 64, 194, 147, 3};
  std::vector<int64_t> cu_q{0}, cu_k{0};
  for (size_t i = 0; i < q_lens.size(); ++i) {
    cu_q.push_back(cu_q.back() + q_lens[i]);
    cu_k.push_back(cu_k.back() + k_lens[i]);
  }
  const auto cuda = torch::TensorOptions().device(torch::kCUDA);
  const Tensor cq = torch::tensor(cu_q, torch::kInt64).to(torch::kCUDA);
  const Tensor ck = torch::tensor(cu_k, torch::kInt64).to(torch::kCUDA);
  for (int64_t kv_heads : {4, 2}) {
    const Tensor q32 = torch::randn({cu_q.back(), 4, 64}, cuda),
                 k32 = torch::randn({cu_k.back(), kv_heads, 64}, cuda),
                 v32 = torch::randn({cu_k.back(), kv_heads, 64}, cuda),
                 w = torch::randn({cu_q.back(), 4, 64}, cuda);
    const Tensor q = q32.to(torch::kBFloat16).requires_grad_(),
                 k = k32.to(torch::kBFloat16).requires_grad_(),
                 v = v32.to(torch::kBFloat16).requires_grad_();
    const Tensor flash = kernels::varlen_attention(q, k, v, cq, ck, 130, 194);
    const auto flash_grads =
        torch::autograd::grad({(flash.to(torch::kFloat) * w).sum()}, {q, k, v});
    // Reference in fp32 from the same bf16-rounded inputs.
    const Tensor rq = q.detach().to(torch::kFloat).requires_grad_(),
                 rk = k.detach().to(torch::kFloat).requires_grad_(),
                 rv = v.detach().to(torch::kFloat).requires_grad_();
    const Tensor ref = kernels::varlen_attention_reference(rq, rk, rv, cq, ck);
    const auto ref_grads = torch::autograd::grad({(ref * w).sum()}, {rq, rk, rv});
    // bf16 output and bf16 gradient accumulation: ~1e-2 relative.
    EXPECT_LT(rel_err(flash, ref), 1e-2) << "kv_heads " << kv_heads;
    for (size_t i = 0; i < 3; ++i)
      EXPECT_LT(rel_err(flash_grads[i], ref_grads[i]), 2e-2) << "input " << i;
    std::printf(
        "[gpu] flash blocks vs reference, kv_heads %ld: out %.3g, dq %.3g, dk %.3g, dv %.3g\n",
        static_cast<long>(kv_heads), rel_err(flash, ref), rel_err(flash_grads[0], ref_grads[0]),
        rel_err(flash_grads[1], ref_grads[1]), rel_err(flash_grads[2], ref_grads[2]));
  }
}

struct SharedRun {
  Tensor rewards, loss;
  std::vector<Tensor> grads;
};

SharedRun run_shared(RewardModel& model, const PackedBatch& batch) {
  model->zero_grad();
  SharedRun out;
  out.rewards = model->forward(batch).to(torch::kFloat);
  out.loss =
      pair_loss_reference(out.rewards, batch.pair_pos.to(out.rewards.device()),
                          batch.pair_neg.to(out.rewards.device()), batch.n_pairs, {0.3, 0.05})
          .loss;
  out.loss.backward();
  for (const auto& p : model->parameters()) out.grads.push_back(p.grad().to(torch::kFloat).cpu());
  return out;
}

TEST_F(RewardModelGpu, SharedPrefixBf16MatchesFp32Reference) {
  GroupBuilder builder(23);
  builder.add_random(90, {25, 3, 60, 1, 12}, 0);
  builder.add_random(5, {1, 12}, 1);
  builder.add_random(40, {30, 7, 9, 9, 2}, 0);
  builder.add_random(1, {2, 9, 4, 1, 33}, 0);
  RewardModel model = testutil::tiny_model(testutil::tiny_config(2, true));
  model->set_attention_impl(AttentionImpl::Math);
  const SharedRun ref =
      run_shared(model, pack_groups(builder.groups(), {128, 0, false}));  // fp32 CPU, separate

  model->to(torch::kCUDA, torch::kBFloat16);
  model->set_attention_impl(AttentionImpl::Varlen);
  const SharedRun separate = run_shared(model, pack_groups(builder.groups(), {128, 0, false}));
  const SharedRun shared = run_shared(model, pack_groups(builder.groups(), {128, 0, true}));
  // bf16 weights and activations through two layers: ~1e-2 relative (as the varlen test).
  for (const SharedRun* got : {&separate, &shared}) {
    EXPECT_LT(rel_err(got->rewards, ref.rewards), 3e-2);
    EXPECT_LT(rel_err(got->loss, ref.loss), 3e-2);
  }
  double worst_vs_separate = 0, worst_vs_fp32 = 0;
  for (size_t i = 0; i < ref.grads.size(); ++i) {
    worst_vs_separate = std::max(worst_vs_separate, rel_err(shared.grads[i], separate.grads[i]));
    worst_vs_fp32 = std::max(worst_vs_fp32, rel_err(shared.grads[i], ref.grads[i]));
    EXPECT_LT(rel_err(shared.grads[i], separate.grads[i]), 5e-2) << "param " << i;
    EXPECT_LT(rel_err(shared.grads[i], ref.grads[i]), 1e-1) << "param " << i;
  }
  std::printf(
      "[gpu] bf16 shared vs fp32 CPU: rewards %.3g, loss %.3g; worst gradient vs bf16 separate "
      "%.3g, "
      "vs fp32 %.3g\n",
      rel_err(shared.rewards, ref.rewards), rel_err(shared.loss, ref.loss), worst_vs_separate,
      worst_vs_fp32);
}

}  // namespace
}  // namespace polar
