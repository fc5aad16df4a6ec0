// Model shapes at their limits are refused before anything is allocated: bounds per key, and the
// bytes a shape needs against the machine's memory.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>

#include "polar/common/error.h"
#include "polar/model/config.h"
#include "polar/model/reward_model.h"

using ::testing::HasSubstr;

namespace {

std::string validate_error(const polar::ModelConfig& c) {
  try {
    c.validate();
  } catch (const polar::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(RobustModel, HugeVocabularyIsRejectedByItsKey) {
  polar::ModelConfig c;
  c.vocab_size = 2147483648LL;
  EXPECT_THAT(validate_error(c),
              HasSubstr("model.vocab_size: expected an integer in [1, 16777216], got 2147483648"));
  c.vocab_size = int64_t{1} << 62;
  EXPECT_THAT(validate_error(c), HasSubstr("model.vocab_size"));
}

TEST(RobustModel, EveryShapeKeyHasBounds) {
  const std::vector<std::pair<std::function<void(polar::ModelConfig&)>, std::string>> cases = {
      {[](auto& c) { c.hidden_size = int64_t{1} << 20; }, "model.hidden_size"},
      {[](auto& c) { c.num_layers = 100000; }, "model.num_layers"},
      {[](auto& c) { c.num_heads = 0; }, "model.num_heads"},
      {[](auto& c) { c.num_kv_heads = -1; }, "model.num_kv_heads"},
      {[](auto& c) { c.intermediate_size = int64_t{1} << 40; }, "model.intermediate_size"},
      {[](auto& c) { c.max_position = 3; },
       "model.max_position: expected an integer in [16, 16777216], got 3"},
      {[](auto& c) { c.rope_theta = 1e30; }, "model.rope_theta"},
      {[](auto& c) { c.rms_eps = 5; }, "model.rms_eps"},
      {[](auto& c) { c.init_std = -1; }, "model.init_std"},
      {[](auto& c) { c.num_heads = 3; }, "divisible by model.num_heads"},
  };
  for (const auto& [change, expected] : cases) {
    polar::ModelConfig c;
    change(c);
    EXPECT_THAT(validate_error(c), HasSubstr(expected));
  }
}

TEST(RobustModel, ShapeLargerThanMemoryIsRefusedBeforeAllocation) {
  ::setenv("POLAR_MEMORY_BYTES", "8e9", 1);
  polar::ModelConfig c;
  c.hidden_size = 65536;
  c.num_heads = 1;
  c.num_kv_heads = 1;
  try {
    polar::RewardModel model(c);  // would need ~137 GB
    ADD_FAILURE() << "allocated a model larger than the memory";
  } catch (const polar::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("more than this machine's 7.5 GiB"));
    EXPECT_THAT(e.what(),
                HasSubstr("model.num_layers x (model.hidden_size, model.intermediate_size)"));
  }
  polar::ModelConfig wide;
  wide.vocab_size = int64_t{1} << 24;
  wide.hidden_size = 4096;
  try {
    polar::check_model_memory(wide, 16.0, "training");
    ADD_FAILURE() << "accepted 69B parameters' training state in 8 GB";
  } catch (const polar::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("model.vocab_size x model.hidden_size"));
    EXPECT_THAT(e.what(), HasSubstr("for training (16 bytes each)"));
  }
  polar::ModelConfig small;
  EXPECT_NO_THROW(polar::check_model_memory(small, 16.0, "training"));
  ::unsetenv("POLAR_MEMORY_BYTES");
  EXPECT_GT(polar::machine_memory_bytes(), 1e8);
}
