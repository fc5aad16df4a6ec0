// Errors that do not say what was being done (LibTorch's own) are reported with the activity:
// Activity keeps the chain an exception left; a torch load failure becomes a polar::Error naming
// the file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <stdexcept>

#include "common/tiny_checkpoint.h"
#include "common/tiny_data.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/common/activity.h"
#include "polar/common/error.h"

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(RobustActivity, ExceptionKeepsTheChainOfActivities) {
  try {
    polar::Activity outer("training step 3");
    polar::Activity inner("saving checkpoint-3");
    throw std::runtime_error("disk full");
  } catch (const std::exception&) {
    EXPECT_EQ(polar::Activity::failed(), "training step 3: saving checkpoint-3");
  }
  { polar::Activity fresh("scoring data.jsonl"); }  // a new top-level activity starts afresh
  EXPECT_EQ(polar::Activity::failed(), "");
}

TEST(RobustActivity, CorruptOptimizerStateNamesTheFile) {
  polar::testing::TempDir tmp;
  const std::string dir = polar::testing::write_tiny_checkpoint(tmp / "ckpt");
  fs::resize_file(dir + "/optimizer.pt", fs::file_size(dir + "/optimizer.pt") / 2);
  auto lm = polar::load_model(dir, torch::kCPU, /*verify=*/false);
  torch::optim::AdamW opt(lm.model->parameters(), torch::optim::AdamWOptions(1e-3));
  try {
    polar::load_optimizer_state(opt, dir);
    ADD_FAILURE() << "loaded half an optimizer state";
  } catch (const polar::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(dir + "/optimizer.pt: cannot load the optimizer state"));
  }
}
