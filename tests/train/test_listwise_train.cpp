// loss.type listwise trains: on copy-task groups with K = 3 negatives the loss starts at log(K+1)
// (all rewards equal) and falls, and the pairwise accuracy rises.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "common/tiny_data.h"
#include "polar/config/train_config.h"
#include "polar/train/trainer.h"

using nlohmann::json;
using polar::testing::TempDir;

TEST(ListwiseTrain, LossFallsAccuracyRises) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 256, 32, /*negatives=*/3);
  const std::string path = tmp / "c.json";
  std::ofstream(path) << polar::testing::tiny_train_config(tmp / "data", tmp / "run", 40);
  const auto cfg = polar::load_train_config(path, {"loss.type=listwise", "model.zero_head=true"});
  ASSERT_EQ(polar::Trainer(cfg, false).run(), 0);
  std::vector<json> m;
  std::ifstream in(tmp / "run/metrics.jsonl");
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) m.push_back(json::parse(line));
  ASSERT_EQ(m.size(), 40u);
  // A zero head gives every candidate reward 0: the first loss is log(1 + K) exactly.
  EXPECT_NEAR(m[0]["loss"].get<double>(), std::log(4.0), 1e-6);
  double last = 0, acc_last = 0;
  for (size_t i = m.size() - 8; i < m.size(); ++i) {
    last += m[i]["loss"].get<double>() / 8;
    acc_last += m[i]["accuracy"].get<double>() / 8;
  }
  EXPECT_LT(last, std::log(4.0) - 0.5) << "loss did not fall";
  EXPECT_GT(acc_last, 0.7) << "accuracy did not rise";
  EXPECT_GT(m.back()["eval_accuracy"].get<double>(), 0.8);
  // The run's config.json records the attention path chosen once for the run.
  std::ifstream cfg_in(tmp / "run/config.json");
  const json saved = json::parse(cfg_in);
  EXPECT_EQ(saved["loss"]["type"], "listwise");
  EXPECT_EQ(saved["runtime"]["attention"], "blocks");  // auto on the CPU
}
