// Optimizer parameter groups: weight decay only on backbone matrices, a
// separate head lr, the linear-probe phase, the new config keys' ranges, and
// starting from a pre-trained model with a zeroed head.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include "common/tiny_data.h"
#include "model/tiny_model.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/common/error.h"
#include "polar/config/train_config.h"
#include "polar/train/param_groups.h"
#include "polar/train/trainer.h"

using polar::ParamRole;
using polar::testing::TempDir;

TEST(ParamGroups, RolesFollowHuggingFaceNames) {
  EXPECT_EQ(polar::param_role("score.weight"), ParamRole::Head);
  EXPECT_EQ(polar::param_role("model.embed_tokens.weight"), ParamRole::NoDecay);
  EXPECT_EQ(polar::param_role("model.norm.weight"), ParamRole::NoDecay);
  EXPECT_EQ(polar::param_role("model.layers.3.input_layernorm.weight"), ParamRole::NoDecay);
  EXPECT_EQ(polar::param_role("model.layers.0.post_attention_layernorm.weight"),
            ParamRole::NoDecay);
  EXPECT_EQ(polar::param_role("model.layers.0.self_attn.q_proj.bias"), ParamRole::NoDecay);
  EXPECT_EQ(polar::param_role("model.layers.0.self_attn.q_proj.weight"), ParamRole::Matrix);
  EXPECT_EQ(polar::param_role("model.layers.1.mlp.down_proj.weight"), ParamRole::Matrix);
}

TEST(ParamGroups, RuleGivesDecayAndLrScalePerRoleAndPhase) {
  polar::TrainSection t;
  t.weight_decay = 0.1;
  t.head_lr_scale = 4.0;
  t.probe_steps = 3;
  auto matrix = polar::param_rule("model.layers.0.mlp.up_proj.weight", t, 0);
  EXPECT_DOUBLE_EQ(matrix.weight_decay, 0.1);
  EXPECT_DOUBLE_EQ(matrix.lr_scale, 0.0);  // held still while probing
  EXPECT_DOUBLE_EQ(polar::param_rule("model.layers.0.mlp.up_proj.weight", t, 3).lr_scale, 1.0);
  auto head = polar::param_rule("score.weight", t, 0);
  EXPECT_DOUBLE_EQ(head.weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(head.lr_scale, 4.0);
  EXPECT_DOUBLE_EQ(polar::param_rule("score.weight", t, 10).lr_scale, 4.0);
  EXPECT_DOUBLE_EQ(polar::param_rule("model.norm.weight", t, 10).weight_decay, 0.0);
}

// With zero gradients AdamW's update is only the decoupled decay p *= 1 - lr *
// wd: matrices shrink, norms, embeddings and the head stay exactly as they
// were.
TEST(ParamGroups, WeightDecayHitsOnlyBackboneMatrices) {
  auto model = polar::testutil::tiny_model(polar::testutil::tiny_config(2, /*qkv_bias=*/true));
  polar::TrainSection t;
  t.lr = 0.1;
  t.weight_decay = 0.5;
  auto groups = polar::build_param_groups(*model, t);
  ASSERT_EQ(groups.roles.size(), 3u);
  size_t counted = 0;
  for (auto& g : groups.groups) counted += g.params().size();
  EXPECT_EQ(counted, model->parameters().size());
  std::vector<ParamRole> roles = groups.roles;
  torch::optim::AdamW opt(std::move(groups.groups), torch::optim::AdamWOptions(t.lr));
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : model->named_parameters()) {
    before[p.key()] = p.value().detach().clone();
    p.value().mutable_grad() = torch::zeros_like(p.value());
  }
  polar::apply_group_lrs(opt, roles, t, t.lr, 0);
  opt.step();
  for (const auto& p : model->named_parameters()) {
    const auto& old = before[p.key()];
    if (polar::param_role(p.key()) == ParamRole::Matrix)
      EXPECT_TRUE(torch::allclose(p.value(), old * (1 - 0.1 * 0.5), 1e-6, 1e-7)) << p.key();
    else
      EXPECT_TRUE(torch::equal(p.value(), old)) << p.key() << " changed";
  }
}

TEST(ParamGroups, ApplyGroupLrsScalesHeadAndFreezesBackboneWhileProbing) {
  auto model = polar::testutil::tiny_model(polar::testutil::tiny_config());
  polar::TrainSection t;
  t.head_lr_scale = 10.0;
  t.probe_steps = 2;
  auto groups = polar::build_param_groups(*model, t);
  std::vector<ParamRole> roles = groups.roles;
  torch::optim::AdamW opt(std::move(groups.groups), torch::optim::AdamWOptions(1.0));
  auto lrs = [&] {
    std::map<ParamRole, double> out;
    for (size_t i = 0; i < roles.size(); ++i)
      out[roles[i]] =
          static_cast<torch::optim::AdamWOptions&>(opt.param_groups()[i].options()).lr();
    return out;
  };
  polar::apply_group_lrs(opt, roles, t, 1e-3, 1);
  auto probing = lrs();
  EXPECT_DOUBLE_EQ(probing[ParamRole::Matrix], 0.0);
  EXPECT_DOUBLE_EQ(probing[ParamRole::NoDecay], 0.0);
  EXPECT_DOUBLE_EQ(probing[ParamRole::Head], 1e-2);
  polar::apply_group_lrs(opt, roles, t, 1e-3, 2);
  auto after = lrs();
  EXPECT_DOUBLE_EQ(after[ParamRole::Matrix], 1e-3);
  EXPECT_DOUBLE_EQ(after[ParamRole::Head], 1e-2);
}

TEST(ParamGroups, ConfigKeysAreRangeChecked) {
  TempDir tmp;
  std::string path = tmp / "c.json";
  std::ofstream(path) << polar::testing::tiny_train_config(tmp / "data", tmp / "run", 10);
  auto rejects = [&](const std::vector<std::string>& sets, const std::string& needle) {
    try {
      polar::load_train_config(path, sets);
      ADD_FAILURE() << sets.back() << " was accepted";
    } catch (const polar::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  rejects({"train.head_lr_scale=0"}, "train.head_lr_scale");
  rejects({"train.head_lr_scale=5000"}, "train.head_lr_scale");
  rejects({"train.probe_steps=-1"}, "train.probe_steps");
  rejects({"train.probe_steps=10"}, "train.probe_steps");
  rejects({"loss.reward_l2=-0.1"}, "loss.reward_l2");
  rejects({"loss.reward_l2=11"}, "loss.reward_l2");
  rejects({"model.reset_head=true", "model.zero_head=true"}, "choose one");
  auto ok = polar::load_train_config(
      path, {"train.head_lr_scale=3", "train.probe_steps=4", "loss.reward_l2=0.01"});
  EXPECT_DOUBLE_EQ(ok.train.head_lr_scale, 3.0);
  EXPECT_EQ(ok.train.probe_steps, 4);
  EXPECT_DOUBLE_EQ(ok.loss.reward_l2, 0.01);
}

namespace {

std::string write_config(const TempDir& tmp, const std::string& name, int64_t steps) {
  std::string path = tmp / (name + ".json");
  std::ofstream(path) << polar::testing::tiny_train_config(tmp / "data", tmp / name, steps);
  return path;
}

}  // namespace

// Fine-tuning a pre-trained model with a zeroed head and a linear probe: every
// reward starts at 0 (first loss exactly log 2) and the probe steps change the
// head only.
TEST(ParamGroups, ZeroHeadAndProbeStartFineTuningFromThePreTrainedBackbone) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 128, 16);
  ASSERT_EQ(polar::Trainer(polar::load_train_config(write_config(tmp, "pre", 6), {}), false).run(),
            0);
  auto cfg = polar::load_train_config(
      write_config(tmp, "ft", 5),
      {"model.init_from=" + (tmp / "pre/final"), "model.zero_head=true", "train.probe_steps=3",
       "run.checkpoint_every=3", "train.head_lr_scale=5"});
  ASSERT_EQ(polar::Trainer(cfg, false).run(), 0);
  std::ifstream metrics(tmp / "ft/metrics.jsonl");
  std::string first;
  std::getline(metrics, first);
  EXPECT_NEAR(nlohmann::json::parse(first)["loss"].get<double>(), std::log(2.0), 1e-6);
  auto pre = polar::load_model(tmp / "pre/final", torch::kCPU);
  auto probed = polar::load_model(tmp / "ft/checkpoint-3", torch::kCPU);
  auto done = polar::load_model(tmp / "ft/final", torch::kCPU);
  auto pre_p = pre.model->named_parameters(), probed_p = probed.model->named_parameters();
  auto done_p = done.model->named_parameters();
  bool backbone_moved_later = false;
  for (const auto& p : pre_p) {
    if (p.key() == "score.weight") continue;
    EXPECT_TRUE(torch::equal(p.value(), probed_p[p.key()])) << p.key() << " moved during the probe";
    backbone_moved_later |= !torch::equal(p.value(), done_p[p.key()]);
  }
  EXPECT_GT(probed_p["score.weight"].abs().sum().item<double>(), 0.0)
      << "the head did not learn while probing";
  EXPECT_TRUE(backbone_moved_later) << "the backbone never trained after the probe";
}
