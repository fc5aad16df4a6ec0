// LoRA training end to end on the tiny model (CPU): only the adapters and the head train and are
// saved, with the base's identity; a resumed run equals the uninterrupted one bit for bit; a base
// that changed is refused at load and at resume, naming both fingerprints; the merged model
// scores like base + adapters; activation checkpointing and shared-prefix packing change
// nothing; DDP and ZeRO-2 at 2 ranks end with the adapters of 1 rank.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "common/hf_test_util.h"
#include "common/tiny_data.h"
#include "dist/dist_test_util.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/hf.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/config/train_config.h"
#include "polar/io/safetensors.h"
#include "polar/model/lora.h"
#include "polar/train/trainer.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using polar::testing::max_parameter_difference;
using polar::testing::TempDir;

namespace {

std::vector<json> read_metrics(const std::string& run_dir) {
  std::vector<json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

class LoraTrain : public ::testing::Test {
 protected:
  // One pre-trained base for every test of the suite (8 full fine-tuning steps).
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    polar::testing::write_copy_task_dataset(*tmp_ / "data", 96, 16);
    std::ofstream(*tmp_ / "base.json")
        << polar::testing::tiny_train_config(*tmp_ / "data", *tmp_ / "base", 8);
    polar::Trainer(polar::load_train_config(*tmp_ / "base.json", {}), false).run();
  }
  static void TearDownTestSuite() {
    delete tmp_;
    tmp_ = nullptr;
  }

  static std::string base() { return *tmp_ / "base/final"; }

  // The tiny config from the base with rank-4 adapters; returns the config file.
  static std::string lora_config(const std::string& run, int64_t steps,
                                 const json& extra_train = {}, const json& extra_lora = {}) {
    json j = json::parse(polar::testing::tiny_train_config(*tmp_ / "data", *tmp_ / run, steps));
    // stage stays "pretrain": continued POLAR pre-training with adapters takes the same path.
    j["model"] = {{"init_from", base()}, {"lora", {{"rank", 4}, {"alpha", 8}}}};
    for (const auto& [k, v] : extra_lora.items()) j["model"]["lora"][k] = v;
    j["train"]["lr"] = 1e-2;
    j["train"]["dist_timeout_s"] = 60;
    for (const auto& [k, v] : extra_train.items()) j["train"][k] = v;
    const std::string path = *tmp_ / (run + ".json");
    std::ofstream(path) << j.dump(2);
    return path;
  }

  static polar::TrainConfig load(const std::string& path,
                                 const std::vector<std::string>& overrides = {}) {
    return polar::load_train_config(path, overrides);
  }

  static TempDir* tmp_;
};

TempDir* LoraTrain::tmp_ = nullptr;

TEST_F(LoraTrain, TrainsAndSavesOnlyTheAdaptersAndTheHead) {
  polar::Trainer(load(lora_config("run", 16)), false).run();
  const auto m = read_metrics(*tmp_ / "run");
  ASSERT_EQ(m.size(), 16u);
  EXPECT_LT(m.back()["loss"].get<double>(), m.front()["loss"].get<double>());

  const auto saved = polar::io::load_safetensors_any(*tmp_ / "run/final");
  // 7 targets x 2 layers x (A, B) + the head.
  EXPECT_EQ(saved.size(), 29u);
  for (const auto& [name, t] : saved)
    EXPECT_TRUE(polar::is_lora_parameter(name) || name == "score.weight") << name;
  const json config = polar::read_json_file(*tmp_ / "run/final/config.json");
  ASSERT_TRUE(config.contains("lora_base"));
  EXPECT_EQ(config["lora_base"]["path"], fs::absolute(base()).lexically_normal().string());
  EXPECT_EQ(config["model"]["lora"]["rank"], 4);

  // Loaded directly (base + adapters): the base is untouched, the head and B moved.
  polar::LoadedModel tuned = polar::load_model(*tmp_ / "run/final", torch::kCPU);
  polar::LoadedModel plain = polar::load_model(base(), torch::kCPU);
  EXPECT_TRUE(polar::has_lora(*tuned.model));
  auto tp = tuned.model->named_parameters(), bp = plain.model->named_parameters();
  for (const auto& p : bp) {
    if (p.key() == "score.weight") {
      EXPECT_FALSE(torch::equal(p.value(), tp[p.key()])) << "the head did not train";
    } else {
      EXPECT_TRUE(torch::equal(p.value(), tp[p.key()])) << p.key() << " changed";
    }
  }
  EXPECT_GT(tp["model.layers.1.mlp.down_proj.lora_B.weight"].abs().max().item<double>(), 0);
}

TEST_F(LoraTrain, ResumeIsBitExact) {
  polar::Trainer(load(lora_config("full", 12)), false).run();
  polar::Trainer(load(lora_config("split", 12), {"run.stop_after_steps=5"}), false).run();
  ASSERT_TRUE(fs::exists(*tmp_ / "split/checkpoint-5"));
  polar::Trainer(load(lora_config("split", 12)), true).run();
  const auto a = read_metrics(*tmp_ / "full"), b = read_metrics(*tmp_ / "split");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
  EXPECT_EQ(max_parameter_difference(*tmp_ / "full/final/model.safetensors",
                                     *tmp_ / "split/final/model.safetensors"),
            0.0);
}

TEST_F(LoraTrain, MergedModelScoresLikeBasePlusAdapters) {
  polar::Trainer(load(lora_config("merge", 8)), false).run();
  polar::LoadedModel lm = polar::load_model(*tmp_ / "merge/final", torch::kCPU);
  const auto seqs = polar::hftest::polar_sequences(
      6, lm.tokenizer.vocab_size(), lm.tokenizer.special().bos, lm.tokenizer.special().reward, 5);
  const auto unmerged = polar::hftest::rewards_of(lm.model, seqs);
  polar::merge_lora(*lm.model);
  EXPECT_FALSE(polar::has_lora(*lm.model));
  const auto merged = polar::hftest::rewards_of(lm.model, seqs);
  // Through the Hugging Face layout in fp32 and back.
  polar::HfExportOptions o;
  o.dtype = "fp32";
  polar::export_hf(lm, *tmp_ / "merge_hf", o);
  polar::LoadedModel again = polar::import_hf(*tmp_ / "merge_hf", torch::kCPU);
  const auto exported = polar::hftest::rewards_of(again.model, seqs);
  double worst = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    worst =
        std::max({worst, std::abs(merged[i] - unmerged[i]), std::abs(exported[i] - unmerged[i])});
  }
  std::cout << "  merged vs base + adapters: max |reward diff| = " << worst << "\n";
  EXPECT_LE(worst, 1e-5);
  // Not vacuous: the adapters moved the rewards away from the base's.
  polar::LoadedModel plain = polar::load_model(base(), torch::kCPU);
  const auto base_rewards = polar::hftest::rewards_of(plain.model, seqs);
  double moved = 0;
  for (size_t i = 0; i < seqs.size(); ++i)
    moved = std::max(moved, std::abs(base_rewards[i] - unmerged[i]));
  EXPECT_GT(moved, 1e-3);
}

TEST_F(LoraTrain, CheckpointingAndSharedPrefixChangeNothing) {
  polar::Trainer(load(lora_config("plain", 6, {}, {})), false).run();
  polar::Trainer(load(lora_config("ckpt", 6, {{"activation_checkpointing", "blocks"}})), false)
      .run();
  polar::Trainer(load(lora_config("unshared", 6), {"data.shared_prefix=false"}), false).run();
  const std::string a = *tmp_ / "plain/final/model.safetensors";
  EXPECT_EQ(max_parameter_difference(a, *tmp_ / "ckpt/final/model.safetensors"), 0.0);
  const double unshared = max_parameter_difference(a, *tmp_ / "unshared/final/model.safetensors");
  std::cout << "  shared prefix vs separate candidates: max |diff| = " << unshared << "\n";
  EXPECT_LE(unshared, 1e-5);
}

TEST_F(LoraTrain, ABaseThatChangedIsRefusedNamingBoth) {
  polar::Trainer(load(lora_config("moved", 6), {"run.stop_after_steps=3"}), false).run();
  // A copy of the base, then one weight changed in it.
  const std::string copy = *tmp_ / "base_copy";
  fs::copy(base(), copy, fs::copy_options::recursive);
  const std::string cfg = lora_config("moved", 6);
  {
    json j = polar::read_json_file(cfg);
    j["model"]["init_from"] = copy;
    std::ofstream(cfg) << j.dump(2);
  }
  polar::LoadedModel lm = polar::load_model(copy, torch::kCPU);
  {
    torch::NoGradGuard no_grad;
    lm.model->named_parameters()["model.layers.0.mlp.up_proj.weight"][0][0].add_(1e-3);
  }
  polar::CheckpointContents contents;
  contents.model = &lm.model;
  contents.tokenizer = &lm.tokenizer;
  contents.config = &lm.config;
  polar::save_checkpoint(copy, contents);
  try {
    polar::Trainer(load(cfg), true).run();
    FAIL() << "resumed onto a changed base";
  } catch (const polar::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("fingerprint"), std::string::npos) << msg;
    EXPECT_NE(msg.find(base()), std::string::npos) << msg;
  }
  // Loading: the checkpoint's record pointed at the changed copy.
  const std::string ckpt_config = *tmp_ / "moved/checkpoint-3/config.json";
  json record = polar::read_json_file(ckpt_config);
  const std::string recorded = record["lora_base"]["fingerprint"];
  record["lora_base"]["path"] = copy;
  polar::write_json_file_atomic(ckpt_config, record);
  try {
    polar::load_model(*tmp_ / "moved/checkpoint-3", torch::kCPU);
    ADD_FAILURE() << "loaded adapters onto a changed base";
  } catch (const polar::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(recorded), std::string::npos) << msg;
    EXPECT_NE(msg.find(polar::base_fingerprint(*lm.model)), std::string::npos) << msg;
    EXPECT_NE(msg.find(copy), std::string::npos) << msg;
  }
  record["lora_base"]["path"] = base();
  polar::write_json_file_atomic(ckpt_config, record);
  EXPECT_NO_THROW(polar::load_model(*tmp_ / "moved/checkpoint-3", torch::kCPU));
}

TEST_F(LoraTrain, TwoRanksDdpAndZero2EndWithTheAdaptersOfOneRank) {
  using polar::testing::Subprocess;
  const auto train = [&](const std::string& run, int nproc, int zero) {
    // lr 1e-3 as the DDP tests: AdamW amplifies rounding noise at larger rates.
    const std::string cfg = lora_config(run, 10, {{"zero", zero}, {"lr", 1e-3}});
    std::vector<std::string> argv;
    if (nproc == 1) {
      argv = {polar::testing::polar_binary(), "train", "--config", cfg};
    } else {
      argv = {polar::testing::polar_run_binary(),
              "--nproc-per-node",
              std::to_string(nproc),
              "--master-port",
              std::to_string(polar::testing::free_tcp_port()),
              "train",
              "--config",
              cfg};
    }
    Subprocess p(argv);
    EXPECT_EQ(p.wait(600s), 0) << p.output();
    return std::string(*tmp_ / (run + "/final/model.safetensors"));
  };
  const std::string one = train("one", 1, 0);
  for (int zero : {0, 2}) {
    const std::string two = train("two_zero" + std::to_string(zero), 2, zero);
    const double diff = max_parameter_difference(one, two);
    std::cout << "  LoRA, 2 ranks (zero " << zero << ") vs 1 rank: max |diff| = " << diff << "\n";
    EXPECT_LE(diff, 1e-5);
  }
}

}  // namespace
