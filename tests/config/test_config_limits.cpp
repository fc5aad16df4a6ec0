// Config validation at the limits: null values, out-of-range numbers (with the key path and the
// allowed range in the message), numbers JSON cannot hold, and non-object top levels.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "common/tiny_data.h"
#include "polar/common/json_config.h"
#include "polar/config/train_config.h"

using polar::testing::TempDir;
using ::testing::HasSubstr;

namespace {

std::string config_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  TempDir tmp;
  const std::string path = tmp / "c.json";
  std::ofstream(path) << text;
  try {
    polar::load_train_config(path, overrides);
  } catch (const polar::Error& e) {
    std::string msg = e.what();
    EXPECT_TRUE(msg.find(path) != std::string::npos || msg.find("--set") != std::string::npos)
        << msg;
    return msg;
  }
  return "";
}

std::string tiny() { return polar::testing::tiny_train_config("/data", "/run", 4); }

}  // namespace

TEST(RobustConfig, TinyConfigIsAccepted) { EXPECT_EQ(config_error(tiny()), ""); }

TEST(RobustConfig, NullIsRejectedWithTheKeyPath) {
  for (const char* key :
       {"train.beta1", "model.init_seed", "run.log_every", "model.architecture", "eval"}) {
    const std::string msg = config_error(tiny(), {std::string(key) + "=null"});
    EXPECT_THAT(msg, HasSubstr(std::string(key) + ": expected")) << key;
    EXPECT_THAT(msg, HasSubstr("got null")) << key;
  }
}

TEST(RobustConfig, OutOfRangeValuesNameKeyAndRange) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"train.min_lr_ratio=-0.5", "train.min_lr_ratio: expected a number in [0, 1], got -0.5"},
      {"run.checkpoint_every=-1",
       "run.checkpoint_every: expected an integer in [0, 1e+15], got -1"},
      {"eval.every=-3", "eval.every: expected an integer in [0, 1e+15], got -3"},
      {"loss.center_coef=-1", "loss.center_coef: expected a number in [0, 1000], got -1"},
      {"train.eps=1e30", "train.eps: expected a number in (0, 0.1], got 1e+30"},
      {"train.lr=4294967297", "train.lr: expected a number in (0, 1]"},
      {"train.beta1=1", "train.beta1: expected a number in [0, 1), got 1"},
      {"train.steps=1e20", "train.steps: expected an integer"},
      {"model.init_seed=-5", "model.init_seed: expected an integer in [0, 1e+15], got -5"},
      {"data.row_tokens=4294967296", "data.row_tokens: expected an integer in [1, 65536]"},
      {"train.threads=1e30", "train.threads: expected an integer, got 1e+30"},
      {"train.seed=18446744073709551615",
       "train.seed: expected an integer, got 18446744073709551615"},
      {"run.output_dir=\"\"", "run.output_dir: must not be empty"},
  };
  for (const auto& [set, expected] : cases)
    EXPECT_THAT(config_error(tiny(), {set}), HasSubstr(expected)) << set;
}

TEST(RobustConfig, NumbersJsonCannotHoldNameTheFile) {
  std::string text = tiny();
  text.replace(text.find("\"steps\": 4"), 10, "\"steps\": 1e999");
  EXPECT_THAT(config_error(text), HasSubstr("invalid JSON"));
  EXPECT_THAT(config_error(tiny(), {"train.lr=1e999"}),
              HasSubstr("--set train.lr=1e999: number out of range"));
}

TEST(RobustConfig, NonObjectTopLevelWithSetNamesTheFile) {
  for (const char* text : {"[1, 2]", "0", "null", "\"x\""}) {
    const std::string msg = config_error(text, {"train.lr=0.1"});
    EXPECT_THAT(msg, HasSubstr("expected a JSON object at the top level")) << text;
  }
  EXPECT_THAT(config_error(tiny(), {"model=3", "model.hidden_size=8"}),
              HasSubstr("model is not an object"));
}

TEST(RobustConfig, RangeDescribesOpenAndClosedEnds) {
  EXPECT_EQ(polar::closed(0, 1).describe(), "[0, 1]");
  EXPECT_EQ(polar::above(0, 1).describe(), "(0, 1]");
  EXPECT_EQ(polar::below(0, 1).describe(), "[0, 1)");
  EXPECT_FALSE(polar::below(0, 1).contains(1));
  EXPECT_FALSE(polar::closed(0, 1).contains(std::nan("")));
  EXPECT_TRUE(polar::above(0, 1).contains(1));
}
