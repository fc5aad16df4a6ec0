// ShardedAdamW in one process (ZeRO context without a process group) against
// torch::optim::AdamW with parameter groups; the memory plan for the tiny and POLAR-7B shapes;
// validation of the ZeRO, checkpointing and offload keys; every_k activation checkpointing.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dist/dist_test_util.h"
#include "model/tiny_model.h"
#include "polar/common/error.h"
#include "polar/config/train_config.h"
#include "polar/dist/dist.h"
#include "polar/loss/polar_loss.h"
#include "polar/train/memory_plan.h"
#include "polar/train/optimizer.h"

namespace {

using polar::testutil::tiny_config;
using polar::testutil::tiny_model;

// Two groups as a decay/no-decay split does it: matrices decay, 1-D tensors (norms) do not and
// use twice the learning rate.
std::unique_ptr<torch::optim::AdamW> grouped_adamw(polar::RewardModel& model, double lr) {
  std::vector<torch::Tensor> decay, plain;
  for (auto& p : model->parameters()) (p.dim() >= 2 ? decay : plain).push_back(p);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay,
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(lr).betas({0.9, 0.95}).weight_decay(0.1)));
  groups.emplace_back(plain,
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(2 * lr).betas({0.9, 0.95}).weight_decay(0.0)));
  return std::make_unique<torch::optim::AdamW>(std::move(groups), torch::optim::AdamWOptions(lr));
}

// A deterministic loss with gradients on every parameter.
torch::Tensor loss_of(polar::RewardModel& model, int step) {
  torch::Tensor loss = torch::zeros({}, model->parameters()[0].options());
  int i = 0;
  for (auto& p : model->parameters())
    loss = loss + (p * std::sin(step + i++)).sum() + p.square().sum() * 0.01;
  return loss;
}

// A tiny model trained with ShardedAdamW, following grouped_adamw's parameter groups.
struct ShardedRun {
  ShardedRun(int stage, bool offload, const torch::Device& device, bool process_group, double lr)
      : model(tiny_model(tiny_config())) {
    model->to(device);
    auto source = grouped_adamw(model, lr);  // only its groups are read
    polar::dist::DistEnv env;
    env.master_port = process_group ? polar::testing::free_tcp_port() : 0;
    polar::dist::DistOptions options;
    options.zero_stage = stage;
    options.bucket_bytes = 4096;  // several buckets
    options.force_process_group = process_group;
    if (offload) options.shard_device = torch::Device(torch::kCPU);
    ctx = polar::dist::Context::create(env, device, options);
    std::vector<torch::Tensor> params = model->parameters();
    ctx->attach_gradients(params);
    polar::ShardedAdamWOptions o;
    o.beta2 = 0.95;
    o.offload = offload;
    optimizer = polar::make_sharded_adamw(ctx, params, polar::param_hypers(*source, params, lr), o);
  }
  void step(int step, double lr, const std::vector<double>& group_scales = {}) {
    optimizer->zero_grad();
    ctx->begin_micro_step(true);
    loss_of(model, step).backward();
    ctx->finish_step(1);
    optimizer->step(lr, group_scales);
  }
  polar::RewardModel model;
  std::shared_ptr<polar::dist::Context> ctx;
  std::unique_ptr<polar::TrainOptimizer> optimizer;
};

void reference_step(polar::RewardModel& model, torch::optim::AdamW& adamw, int step) {
  adamw.zero_grad(true);
  loss_of(model, step).backward();
  adamw.step();
}

// Same elementwise AdamW; only vectorised vs scalar tails (or fused kernels) may round differently.
void expect_same_parameters(polar::RewardModel& a, polar::RewardModel& b, const std::string& what) {
  const auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_TRUE(torch::allclose(pa[i], pb[i], 1e-6, 1e-7)) << what << " param " << i;
}

// Trains a reference model with torch::optim::AdamW and a copy with ShardedAdamW for 5 steps.
void expect_sharded_equals_adamw(int stage, bool offload, const torch::Device& device,
                                 bool process_group) {
  const double lr = 1e-2;
  auto reference = tiny_model(tiny_config());
  reference->to(device);
  auto adamw = grouped_adamw(reference, lr);
  ShardedRun sharded(stage, offload, device, process_group, lr);
  EXPECT_EQ(sharded.ctx->shard_layout().numel, sharded.ctx->shard_layout().total_numel);
  for (int step = 0; step < 5; ++step) {
    reference_step(reference, *adamw, step);
    sharded.step(step, lr);
  }
  expect_same_parameters(reference, sharded.model,
                         "stage " + std::to_string(stage) + " offload " + std::to_string(offload));
}

}  // namespace

TEST(ShardedAdamW, FollowsParameterGroupsLikeTorchAdamW) {
  for (int stage : {1, 2}) {
    for (bool offload : {false, true})
      expect_sharded_equals_adamw(stage, offload, torch::kCPU, false);
  }
}

// A linear probe under ZeRO: per-step group scales hold a group still (its moments still follow
// the gradients, as torch::optim::AdamW's do at lr 0) exactly as scaling the groups' lrs does.
TEST(ShardedAdamW, GroupScalesMatchScaledAdamWGroups) {
  for (int stage : {1, 2}) {
    const double lr = 1e-2;
    auto reference = tiny_model(tiny_config());
    auto adamw = grouped_adamw(reference, lr);
    ShardedRun sharded(stage, false, torch::kCPU, false, lr);
    const auto before = reference->parameters()[0].clone();
    for (int step = 0; step < 6; ++step) {
      const std::vector<double> scales =
          step < 3 ? std::vector<double>{0.0, 1.0} : std::vector<double>{1.0, 1.0};
      auto& groups = adamw->param_groups();
      for (size_t g = 0; g < groups.size(); ++g)
        static_cast<torch::optim::AdamWOptions&>(groups[g].options())
            .lr((g == 0 ? lr : 2 * lr) * scales[g]);
      reference_step(reference, *adamw, step);
      if (step == 2)
        EXPECT_TRUE(torch::equal(reference->parameters()[0], before));  // group 0 held still
      sharded.step(step, lr, scales);
    }
    expect_same_parameters(reference, sharded.model, "stage " + std::to_string(stage));
  }
}

// train.zero 0 on CUDA steps with ATen's fused AdamW on torch::optim::AdamW's own state: the same
// parameters as torch::optim::AdamW's step, and the state it leaves is the one AdamW saves.
TEST(OptimizerGpu, FusedReplicatedAdamWFollowsTorchAdamW) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device cuda(torch::kCUDA, 0);
  auto reference = tiny_model(tiny_config());
  auto fused = tiny_model(tiny_config());
  reference->to(cuda);
  fused->to(cuda);
  const double lr = 1e-2;
  auto adamw = grouped_adamw(reference, lr);
  auto ctx = polar::dist::Context::create(polar::dist::DistEnv{}, cuda, polar::dist::DistOptions{});
  auto optimizer = polar::make_replicated_adamw(grouped_adamw(fused, lr), ctx, lr);
  for (int step = 0; step < 5; ++step) {
    reference_step(reference, *adamw, step);
    optimizer->zero_grad();
    loss_of(fused, step).backward();
    optimizer->step(lr);
  }
  expect_same_parameters(reference, fused, "fused replicated");
  EXPECT_EQ(optimizer->state_bytes(), 2 * 4 * polar::testutil::tiny_config().num_parameters());
}

// NCCL's real _reduce_scatter_base and _allgather_base on a one-rank process group, with the
// state on the GPU and offloaded to pinned host memory.
TEST(ZeroGpu, NcclShardedAdamWFollowsTorchAdamW) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (bool offload : {false, true})
    expect_sharded_equals_adamw(2, offload, torch::Device(torch::kCUDA, 0), true);
}

TEST(ShardedAdamW, ClipsTheGlobalNormOfTheShard) {
  auto model = tiny_model(tiny_config());
  polar::dist::DistOptions options;
  options.zero_stage = 2;
  auto ctx = polar::dist::Context::create(polar::dist::DistEnv{}, torch::kCPU, options);
  std::vector<torch::Tensor> params = model->parameters();
  ctx->attach_gradients(params);
  auto source = grouped_adamw(model, 1e-3);
  auto optimizer =
      polar::make_sharded_adamw(ctx, params, polar::param_hypers(*source, params, 1e-3), {});
  ctx->begin_micro_step(true);
  loss_of(model, 1).backward();
  ctx->finish_step(1);
  for (const auto& p : params) EXPECT_FALSE(p.grad().defined()) << "ZeRO-2 keeps only the shard";
  const double norm = ctx->gradient_shard().norm().item<double>();
  EXPECT_NEAR(optimizer->clip_grad_norm(0.5), norm, 1e-4 * norm);
  EXPECT_NEAR(ctx->gradient_shard().norm().item<double>(), 0.5, 1e-5);
}

TEST(MemoryPlan, TinyShapeAndPolar7bOnEightAndOneDevices) {
  polar::TrainConfig cfg;
  cfg.data.micro_batch_tokens = 16384;
  cfg.data.row_tokens = 16384;
  polar::ModelConfig b7;  // InternLM2-7B
  b7.vocab_size = 92544;
  b7.hidden_size = 4096;
  b7.num_layers = 32;
  b7.num_heads = 32;
  b7.num_kv_heads = 8;
  b7.intermediate_size = 14336;
  const double gib = 1024.0 * 1024 * 1024;
  // Replicated: 16 bytes per parameter alone exceed 80 GB.
  auto ddp = polar::plan_memory(b7, cfg, 8, true, 0);
  EXPECT_GT(ddp.params + ddp.grads + ddp.optimizer, 100 * gib);
  EXPECT_GT(ddp.peak, 80 * gib);
  cfg.train.zero = 2;
  cfg.train.activation_checkpointing = polar::ActivationCheckpointing::Blocks;
  auto zero2 = polar::plan_memory(b7, cfg, 8, true, 0);
  EXPECT_LT(zero2.peak, 80 * gib) << zero2.format(80);
  EXPECT_LT(zero2.activations, zero2.activations_none / 4);
  EXPECT_NEAR(static_cast<double>(zero2.optimizer), static_cast<double>(ddp.optimizer) / 8, 64);
  cfg.train.offload_optimizer = true;
  auto offload = polar::plan_memory(b7, cfg, 1, true, 0);
  EXPECT_LT(offload.peak, 80 * gib) << offload.format(80);
  EXPECT_GT(offload.host, 12 * 7e9 * 0.9);  // master + m + v + gradient shard in host memory
  EXPECT_NE(offload.format(80).find("fits in 80 GiB: yes"), std::string::npos);
}

TEST(TrainConfig, ValidatesZeroCheckpointingAndOffloadKeys) {
  auto parse = [](const nlohmann::json& train) {
    return polar::TrainConfig::from_json({{"train", train}}, "cfg");
  };
  EXPECT_EQ(parse({{"zero", 2}, {"offload_optimizer", true}}).train.zero, 2);
  auto expect_error = [&](const nlohmann::json& train, const std::string& part) {
    try {
      parse(train);
      ADD_FAILURE() << "accepted " << train.dump();
    } catch (const polar::Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error({{"zero", 3}}, "cfg: train.zero: expected an integer in [0, 2], got 3");
  expect_error(
      {{"activation_checkpointing", "layers"}},
      "cfg: train.activation_checkpointing: expected none, blocks or every_k, got \"layers\"");
  expect_error({{"activation_checkpointing_k", 0}},
               "cfg: train.activation_checkpointing_k: expected an integer in [1, 1024], got 0");
  expect_error({{"offload_optimizer", true}},
               "cfg: train.offload_optimizer: needs train.zero 1 or 2");
  expect_error({{"param_dtype", "fp16"}}, "cfg: train.param_dtype: expected fp32 or bf16");
  expect_error({{"zero", 1}, {"precision", "bf16"}, {"param_dtype", "bf16"}},
               "cfg: train.param_dtype: bf16 weights need train.zero 2");
  expect_error({{"zero", 2}, {"param_dtype", "bf16"}},
               "cfg: train.param_dtype: bf16 weights need train.zero 2");  // precision fp32
  EXPECT_EQ(parse({{"zero", 2}, {"precision", "bf16"}, {"param_dtype", "bf16"}}).train.param_dtype,
            polar::Precision::Bf16);
  polar::TrainSection t;
  t.activation_checkpointing = polar::ActivationCheckpointing::EveryK;
  t.activation_checkpointing_k = 3;
  EXPECT_EQ(polar::activation_checkpoint_interval(t), 3);
}

TEST(RewardModel, EveryKActivationCheckpointingGivesSameGradients) {
  auto config = tiny_config();
  config.num_layers = 4;
  torch::Tensor tokens = torch::randint(0, 512, {2, 16}, torch::kLong);
  torch::Tensor positions = torch::arange(16).repeat({2, 1});
  torch::Tensor segments = torch::ones({2, 16}, torch::kLong);
  torch::Tensor reward_index = torch::tensor({15, 31}, torch::kLong);
  std::vector<torch::Tensor> reference;
  for (int64_t k : {0, 1, 2, 3}) {
    auto model = tiny_model(config);
    model->set_activation_checkpointing_every(k);
    model->forward(tokens, positions, segments, reward_index).square().sum().backward();
    const auto params = model->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      if (k == 0) {
        reference.push_back(params[i].grad().clone());
      } else {
        EXPECT_TRUE(torch::equal(reference[i], params[i].grad())) << "k " << k << " param " << i;
      }
    }
  }
}
