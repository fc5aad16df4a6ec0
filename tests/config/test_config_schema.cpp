// The training config's schema: every example config round-trips parse -> to_json -> parse,
// checkpoints' saved configs still load, unknown keys and choices are refused with the key path
// (and a "did you mean"), `--set` is typed by the schema, and docs/config.md is current.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/tiny_data.h"
#include "fuzz/fuzz_util.h"
#include "polar/common/config_visitors.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/config/train_config.h"

namespace fs = std::filesystem;
using nlohmann::json;
using polar::TrainConfig;
using polar::testing::TempDir;
using ::testing::HasSubstr;

namespace {

std::string parse_error(const json& j) {
  try {
    TrainConfig::from_json(j, "c.json");
  } catch (const polar::Error& e) {
    return e.what();
  }
  return "";
}

std::string set_error(const std::vector<std::string>& overrides) {
  TempDir tmp;
  std::ofstream(tmp / "c.json") << polar::testing::tiny_train_config("/data", "/run", 4);
  try {
    polar::load_train_config(tmp / "c.json", overrides);
  } catch (const polar::Error& e) {
    return e.what();
  }
  return "";
}

TrainConfig with_sets(const std::vector<std::string>& overrides) {
  TempDir tmp;
  std::ofstream(tmp / "c.json") << polar::testing::tiny_train_config("/data", "/run", 4);
  return polar::load_train_config(tmp / "c.json", overrides);
}

// Every key of `given` is in `written` with an equal value (numbers compare by value).
void expect_contains(const json& written, const json& given, const std::string& where) {
  for (auto it = given.begin(); it != given.end(); ++it) {
    const std::string path = where + it.key();
    ASSERT_TRUE(written.contains(it.key())) << path << " was dropped by to_json";
    if (it->is_object())
      expect_contains(written[it.key()], *it, path + ".");
    else
      EXPECT_EQ(written[it.key()], *it) << path;
  }
}

}  // namespace

TEST(ConfigSchema, EveryExampleConfigRoundTrips) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(POLAR_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".json") continue;
    ++n;
    const std::string path = entry.path().string();
    const json given = polar::read_json_file(path);
    const TrainConfig first = TrainConfig::from_json(given, path);
    const json written = first.to_json();
    expect_contains(written, given, "");
    const TrainConfig second = TrainConfig::from_json(written, path + " (written)");
    EXPECT_EQ(second.to_json(), written) << path;
  }
  EXPECT_GE(n, 4);
}

TEST(ConfigSchema, DefaultsRoundTripAndEveryKeyIsWritten) {
  const json written = TrainConfig().to_json();
  EXPECT_EQ(TrainConfig::from_json(written, "defaults").to_json(), written);
  for (const polar::KeyDoc& d : polar::train_config_keys()) {
    if (d.path == "tokenizer_fingerprint") continue;   // written by checkpoints only
    if (d.path.rfind("model.lora", 0) == 0) continue;  // written when LoRA is on
    std::string pointer = "/" + d.path;
    std::replace(pointer.begin(), pointer.end(), '.', '/');
    EXPECT_TRUE(written.contains(json::json_pointer(pointer))) << d.path;
  }
}

// config.json as checkpoints of the previous layout wrote it (every key; choices as strings;
// the tokenizer's fingerprint at the top level): it must keep loading.
TEST(ConfigSchema, SavedCheckpointConfigStillLoads) {
  const json saved = json::parse(R"({
    "stage": "finetune", "tokenizer_fingerprint": "sha256:abc",
    "model": {"architecture": "llama", "vocab_size": 300, "hidden_size": 32, "num_layers": 2,
              "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64, "max_position": 256,
              "rope_theta": 10000.0, "rope_scaling": 1.0, "rms_eps": 1e-06, "qkv_bias": false,
              "tie_embeddings": false, "init_std": 0.02, "init_from": "", "shape_from": "",
              "tokenizer": "", "init_seed": 0, "reset_head": false, "zero_head": false},
    "data": {"train": "d/train", "eval": "", "row_tokens": 256, "micro_batch_tokens": 512,
             "shared_prefix": true},
    "loss": {"margin": 0.0, "center_coef": 0.0, "reward_l2": 0.0},
    "train": {"steps": 4, "epochs": 0.0, "batch_groups": 4, "lr": 0.001, "min_lr_ratio": 0.1,
              "warmup_ratio": 0.03, "warmup_steps": -1, "weight_decay": 0.0,
              "head_lr_scale": 1.0, "probe_steps": 0, "beta1": 0.9, "beta2": 0.95, "eps": 1e-08,
              "grad_clip": 1.0, "seed": 0, "device": "auto", "precision": "bf16",
              "max_bad_steps": 3, "threads": 0, "fused_kernels": true, "attention": "math",
              "dist_timeout_s": 300.0, "zero": 2, "activation_checkpointing": "every_k",
              "activation_checkpointing_k": 2, "offload_optimizer": false,
              "param_dtype": "bf16"},
    "eval": {"every": 0, "max_groups": 0},
    "run": {"output_dir": "r", "checkpoint_every": 0, "keep_last": 2, "log_every": 1,
            "stop_after_steps": 0}})");
  const TrainConfig c = TrainConfig::from_json(saved, "ckpt/config.json");
  EXPECT_EQ(c.stage, polar::Stage::Finetune);
  EXPECT_EQ(c.train.precision, polar::Precision::Bf16);
  EXPECT_EQ(c.train.attention, polar::AttentionPath::Math);
  EXPECT_EQ(c.train.activation_checkpointing, polar::ActivationCheckpointing::EveryK);
  EXPECT_EQ(c.loss.type, polar::LossType::Pairwise);
  EXPECT_EQ(c.model.shape.vocab_size, 300);
  EXPECT_TRUE(c.model.shape_given);
  expect_contains(c.to_json(), saved, "");
}

TEST(ConfigSchema, UnknownKeysAreRefusedWithDidYouMean) {
  EXPECT_THAT(parse_error({{"train", {{"lrr", 0.1}}}}),
              HasSubstr("c.json: train.lrr: unknown key (did you mean \"lr\"?)"));
  EXPECT_THAT(parse_error({{"trian", json::object()}}),
              HasSubstr("c.json: trian: unknown key (did you mean \"train\"?)"));
  EXPECT_THAT(parse_error({{"model", {{"hiden_size", 64}}}}),
              HasSubstr("model.hiden_size: unknown key (did you mean \"hidden_size\"?)"));
  // Nothing close: no suggestion.
  const std::string far = parse_error({{"run", {{"completely_different", 1}}}});
  EXPECT_THAT(far, HasSubstr("run.completely_different: unknown key"));
  EXPECT_THAT(far, ::testing::Not(HasSubstr("did you mean")));
}

TEST(ConfigSchema, ChoicesAreEnumsAndNameTheKey) {
  EXPECT_THAT(parse_error({{"train", {{"precision", "fp16"}}}}),
              HasSubstr("c.json: train.precision: expected fp32 or bf16, got \"fp16\""));
  EXPECT_THAT(parse_error({{"loss", {{"type", "ranking"}}}}),
              HasSubstr("loss.type: expected pairwise or listwise, got \"ranking\""));
  EXPECT_THAT(parse_error({{"stage", 3}}),
              HasSubstr("stage: expected pretrain or finetune, got 3"));
  EXPECT_THAT(parse_error({{"train", {{"device", "gpu"}}}}),
              HasSubstr("train.device: expected auto, cpu, cuda or cuda:N, got \"gpu\""));
  EXPECT_EQ(parse_error({{"train", {{"device", "cuda:3"}}}}), "");
}

TEST(ConfigSchema, SetIsTypedByTheSchema) {
  const TrainConfig c = with_sets({"data.train=123", "loss.type=listwise", "train.lr=0.01",
                                   "train.precision=\"bf16\"", "run.output_dir=out dir"});
  EXPECT_EQ(c.data.train, "123");  // a string key takes the text, even when it looks like JSON
  EXPECT_EQ(c.loss.type, polar::LossType::Listwise);
  EXPECT_DOUBLE_EQ(c.train.lr, 0.01);
  EXPECT_EQ(c.train.precision, polar::Precision::Bf16);
  EXPECT_EQ(c.run.output_dir, "out dir");
  EXPECT_THAT(set_error({"train.lrr=0.1"}),
              HasSubstr("--set train.lrr=0.1: unknown key train.lrr (did you mean \"train.lr\"?)"));
  EXPECT_THAT(set_error({"train.lr=fast"}), HasSubstr("train.lr: expected a number, got \"fast\""));
}

TEST(ConfigSchema, KeysAreDocumentedOnceEach) {
  std::set<std::string> seen;
  for (const polar::KeyDoc& d : polar::train_config_keys()) {
    EXPECT_TRUE(seen.insert(d.path).second) << "duplicate key " << d.path;
    EXPECT_FALSE(d.help.empty()) << d.path << " has no help";
    EXPECT_EQ(d.type == "choice", !d.choices.empty()) << d.path;
  }
  for (const char* key : {"stage", "model.hidden_size", "model.init_from", "loss.type", "train.lr",
                          "train.attention", "run.output_dir", "eval.every"})
    EXPECT_TRUE(seen.count(key)) << key;
}

TEST(ConfigSchema, ExplainNamesTypeDefaultAndChoices) {
  const std::string lr = polar::explain_config_key("train.lr");
  EXPECT_THAT(lr, HasSubstr("train.lr (number, default 0.001, allowed: (0, 1]"));
  EXPECT_THAT(polar::explain_config_key("loss"), HasSubstr("listwise: softmax"));
  try {
    polar::explain_config_key("train.warmup_step");
    ADD_FAILURE() << "accepted an unknown key";
  } catch (const polar::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("did you mean"));
  }
}

// docs/config.md is generated from the schema; regenerate it with
// `build/polar config --markdown > docs/config.md` when this fails.
TEST(ConfigDocs, CheckedInFileIsCurrent) {
  std::ifstream in(POLAR_SOURCE_DIR "/docs/config.md");
  ASSERT_TRUE(in.good()) << "docs/config.md is missing";
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_TRUE(ss.str() == polar::train_config_markdown())
      << "docs/config.md is stale: run `build/polar config --markdown > docs/config.md`";
}

TEST(ConfigDocs, CliPrintsEveryKeyAndTheMarkdown) {
  TempDir tmp;
  const std::string polar_bin = POLAR_BINARY_DIR "/polar";
  const auto keys = polar::fuzz::run_process({polar_bin, "config", "--keys"}, {}, 120, tmp / "k");
  ASSERT_EQ(keys.exit_code, 0) << keys.output;
  std::string expected;
  for (const polar::KeyDoc& d : polar::train_config_keys()) expected += d.path + "\n";
  EXPECT_EQ(keys.output, expected);
  const auto md = polar::fuzz::run_process({polar_bin, "config", "--markdown"}, {}, 120, tmp / "m");
  ASSERT_EQ(md.exit_code, 0) << md.output;
  EXPECT_EQ(md.output, polar::train_config_markdown());
}
