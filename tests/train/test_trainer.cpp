// Trainer tests on a tiny model and copy-task data: loss falls, exact resume, non-finite guard,
// config errors, LR schedule and the data order across world sizes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "common/tiny_data.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/config/train_config.h"
#include "polar/io/safetensors.h"
#include "polar/train/data_order.h"
#include "polar/train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using polar::testing::TempDir;

namespace {

polar::TrainConfig tiny_config(const TempDir& tmp, const std::string& run, int64_t steps,
                               const std::vector<std::string>& overrides = {}) {
  std::string path = tmp / (run + ".json");
  std::ofstream(path) << polar::testing::tiny_train_config(tmp / "data", tmp / run, steps);
  return polar::load_train_config(path, overrides);
}

std::vector<json> read_metrics(const std::string& run_dir) {
  std::vector<json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

}  // namespace

TEST(Trainer, SmokeLossFallsAccuracyRises) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 256, 32);
  auto cfg = tiny_config(tmp, "run", 40);
  polar::Trainer trainer(cfg, false);
  ASSERT_EQ(trainer.run(), 0);
  auto m = read_metrics(tmp / "run");
  ASSERT_EQ(m.size(), 40u);
  // Step 1 is measured on the freshly initialised model (its loss is ~log 2).
  double first = m[0]["loss"].get<double>(), acc_first = m[0]["accuracy"].get<double>();
  double last = 0, acc_last = 0;
  for (int i = 0; i < 8; ++i) {
    last += m[m.size() - 1 - i]["loss"].get<double>() / 8;
    acc_last += m[m.size() - 1 - i]["accuracy"].get<double>() / 8;
  }
  EXPECT_NEAR(first, std::log(2.0), 0.05);
  EXPECT_LT(last, first - 0.3) << "loss did not fall";
  EXPECT_GT(acc_last, acc_first + 0.2) << "accuracy did not rise";
  EXPECT_GT(m.back()["eval_accuracy"].get<double>(), 0.9);
  EXPECT_TRUE(m.back().contains("eval_accuracy"));
  EXPECT_TRUE(fs::exists(tmp / "run/final/model.safetensors"));
  EXPECT_TRUE(fs::exists(tmp / "run/final/tokenizer/tokenizer.model"));
  EXPECT_TRUE(fs::exists(tmp / "run/final/config.json"));
  // keep_last = 2: checkpoints 36 and 40 remain of 4, 8, ..., 40.
  EXPECT_FALSE(fs::exists(tmp / "run/checkpoint-32"));
  EXPECT_TRUE(fs::exists(tmp / "run/checkpoint-36/optimizer.pt"));
  EXPECT_TRUE(fs::exists(tmp / "run/checkpoint-40/trainer_state.json"));
}

TEST(Trainer, ResumeGivesExactlyTheUninterruptedLosses) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 48, 8);
  // Uninterrupted: 14 steps (the stream wraps into a second epoch at step 6).
  polar::Trainer(tiny_config(tmp, "full", 14), false).run();
  // Interrupted after 6 steps, then resumed in a fresh Trainer.
  polar::Trainer(tiny_config(tmp, "split", 14, {"run.stop_after_steps=6"}), false).run();
  ASSERT_TRUE(fs::exists(tmp / "split/checkpoint-6"));
  ASSERT_FALSE(fs::exists(tmp / "split/final"));
  polar::Trainer(tiny_config(tmp, "split", 14), true).run();
  auto a = read_metrics(tmp / "full"), b = read_metrics(tmp / "split");
  ASSERT_EQ(a.size(), 14u);
  ASSERT_EQ(b.size(), 14u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["step"], b[i]["step"]);
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>()) << "step " << i + 1;
  }
  auto wa = polar::io::load_safetensors_any(tmp / "full/final");
  auto wb = polar::io::load_safetensors_any(tmp / "split/final");
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, t] : wa) EXPECT_TRUE(torch::equal(t, wb.at(name))) << name;
}

TEST(Trainer, NonFiniteStepsAreSkippedThenAbort) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 64, 0);
  // A huge learning rate drives the weights to inf/NaN after the first update.
  auto cfg = tiny_config(tmp, "run", 20,
                         {"train.warmup_steps=0", "train.grad_clip=0", "train.max_bad_steps=3"});
  cfg.train.lr = 1e30;  // beyond what a config accepts (train.lr is at most 1)
  polar::Trainer trainer(cfg, false);
  try {
    trainer.run();
    FAIL() << "expected an abort";
  } catch (const polar::Error& e) {
    EXPECT_NE(std::string(e.what()).find("consecutive non-finite"), std::string::npos) << e.what();
  }
  auto m = read_metrics(tmp / "run");
  ASSERT_GE(m.size(), 3u);
  EXPECT_TRUE(m.back()["skipped"].get<bool>());
}

TEST(TrainConfig, RejectsUnknownKeysAndBadTypesNamingThem) {
  TempDir tmp;
  std::string path = tmp / "c.json";
  std::ofstream(path) << R"({"train": {"stepz": 3}})";
  try {
    polar::load_train_config(path, {});
    FAIL();
  } catch (const polar::Error& e) {
    EXPECT_NE(std::string(e.what()).find("stepz"), std::string::npos) << e.what();
  }
  std::ofstream(path) << R"({"train": {"lr": "fast"}})";
  try {
    polar::load_train_config(path, {});
    FAIL();
  } catch (const polar::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.lr"), std::string::npos) << e.what();
  }
  std::ofstream(path) << R"({"train": {"steps": 3}})";
  auto cfg =
      polar::load_train_config(path, {"train.lr=0.5", "run.output_dir=x/y", "model.init_from=ck"});
  EXPECT_EQ(cfg.train.lr, 0.5);
  EXPECT_EQ(cfg.run.output_dir, "x/y");
  EXPECT_EQ(cfg.model.init_from, "ck");
  EXPECT_THROW(polar::load_train_config(path, {"novalue"}), polar::Error);
}

TEST(TrainConfig, LearningRateWarmupThenCosine) {
  polar::TrainSection t;
  t.steps = 100;
  t.lr = 1.0;
  t.min_lr_ratio = 0.1;
  t.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(polar::learning_rate_at(t, 0), 0.1);
  EXPECT_DOUBLE_EQ(polar::learning_rate_at(t, 9), 1.0);
  EXPECT_DOUBLE_EQ(polar::learning_rate_at(t, 10), 1.0);
  EXPECT_NEAR(polar::learning_rate_at(t, 55), 0.55, 1e-12);
  EXPECT_NEAR(polar::learning_rate_at(t, 100), 0.1, 1e-12);
}

TEST(DataOrder, RankSlicesPartitionTheGlobalBatch) {
  polar::GroupStream one(37, 5), a(37, 5), b(37, 5), c(37, 5);
  for (int64_t step = 0; step < 10; ++step) {
    auto full = one.step_groups(step, 8, 0, 1);
    auto r0 = a.step_groups(step, 8, 0, 2), r1 = b.step_groups(step, 8, 1, 2);
    std::vector<int64_t> merged;
    for (size_t i = 0; i < r0.size(); ++i) {
      merged.push_back(r0[i]);
      merged.push_back(r1[i]);
    }
    EXPECT_EQ(merged, full);
    EXPECT_EQ(c.step_groups(step, 8, 2, 3).size(), 2u);
  }
  // Every group appears exactly once per epoch.
  polar::GroupStream s(37, 9);
  std::vector<int> seen(37, 0);
  for (int64_t p = 37; p < 74; ++p) seen[static_cast<size_t>(s.at(p))]++;
  for (int v : seen) EXPECT_EQ(v, 1);
}
