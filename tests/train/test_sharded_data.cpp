// Training on a pre-training dataset written as many shards by the streaming builder: the groups
// are those of a one-shard build, and an interrupted run resumes with exactly the same losses.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "common/tiny_data.h"
#include "polar/config/train_config.h"
#include "polar/data/builder.h"
#include "polar/data/shards.h"
#include "polar/train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using polar::testing::TempDir;

namespace {

std::vector<double> losses(const std::string& run_dir) {
  std::vector<double> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(json::parse(line)["loss"].get<double>());
  }
  return out;
}

polar::TrainConfig config(const TempDir& tmp, const std::string& run,
                          const std::vector<std::string>& overrides = {}) {
  const std::string path = tmp / (run + ".json");
  std::ofstream(path) << polar::testing::tiny_train_config(tmp / "sharded", tmp / run, 10);
  return polar::load_train_config(path, overrides);
}

TEST(ShardedPretrainData, SameGroupsAsOneShardAndExactResume) {
  TempDir tmp;
  std::ofstream traj(tmp / "traj.jsonl");
  for (int i = 0; i < 60; ++i) {
    for (int k = 0; k < 4; ++k) {
      for (int j = 0; j < 2; ++j) {
        traj << json{{"prompt", "what is " + std::to_string(i) + " of the sea"},
                     {"policy", "P" + std::to_string(k)},
                     {"response",
                      std::string(k + 1, "abcd"[k]) + " answer " + std::to_string(i * j)}}
                    .dump()
             << "\n";
      }
    }
  }
  traj.close();
  polar::PretrainBuildOptions o;
  o.trajectories = {tmp / "traj.jsonl"};
  o.tokenizer = polar::testing::tiny_tokenizer_dir();
  o.eval_fraction = 0.1;
  o.progress = false;
  o.output = tmp / "single";
  polar::build_pretrain_dataset(o);
  o.output = tmp / "sharded";
  o.groups_per_shard = 7;
  o.partitions = 3;
  polar::build_pretrain_dataset(o);

  const auto one = polar::GroupDataset::open(tmp / "single/train");
  const auto many = polar::GroupDataset::open(tmp / "sharded/train");
  const json index = json::parse(std::ifstream(tmp / "sharded/train/split.json"));
  ASSERT_GT(index["shards"].size(), 10u);
  ASSERT_EQ(one.size(), many.size());
  for (int64_t i = 0; i < one.size(); ++i) {
    const auto a = one.group(i), b = many.group(i);
    ASSERT_EQ(a.total_tokens(), b.total_tokens()) << i;
    EXPECT_TRUE(std::equal(a.prefix.data, a.prefix.data + a.prefix.size, b.prefix.data)) << i;
  }

  polar::Trainer(config(tmp, "full"), false).run();
  polar::Trainer(config(tmp, "split", {"run.stop_after_steps=4"}), false).run();
  polar::Trainer(config(tmp, "split"), true).run();
  const auto a = losses(tmp / "full"), b = losses(tmp / "split");
  ASSERT_EQ(a.size(), 10u);
  EXPECT_EQ(a, b);
}

}  // namespace
