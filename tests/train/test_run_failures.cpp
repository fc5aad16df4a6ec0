// Runs that must not end as a success: every step non-finite; and start-up hygiene: stale
// temporaries of killed saves removed when a run starts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/wait.h>
#include <unistd.h>
#include <filesystem>
#include <fstream>

#include "common/tiny_data.h"
#include "polar/common/error.h"
#include "polar/config/train_config.h"
#include "polar/train/run_setup.h"
#include "polar/train/trainer.h"

namespace fs = std::filesystem;
using polar::testing::TempDir;
using ::testing::HasSubstr;

namespace {

polar::TrainConfig tiny_config(const TempDir& tmp, int64_t steps) {
  std::string path = tmp / "c.json";
  std::ofstream(path) << polar::testing::tiny_train_config(tmp / "data", tmp / "run", steps);
  return polar::load_train_config(path, {"train.max_bad_steps=100", "run.checkpoint_every=0"});
}

}  // namespace

TEST(RobustTrain, RunWithEveryStepSkippedFailsWithoutFinal) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 32, 0);
  auto cfg = tiny_config(tmp, 3);
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  const std::string stale = tmp / ("run/checkpoint-2.tmp-" + std::to_string(child));
  fs::create_directories(stale);
  // Weights with a NaN: every loss is NaN from the first step on.
  auto poisoned = [](polar::TrainConfig& c, const torch::Device& d,
                     const std::optional<std::string>& r) {
    polar::RunSetup s = polar::prepare_run(c, d, r);
    torch::NoGradGuard no_grad;
    s.model->parameters().back().fill_(NAN);  // the reward head: every reward NaN
    return s;
  };
  polar::Trainer trainer(cfg, false, poisoned);
  EXPECT_FALSE(fs::exists(stale)) << "stale temporary of a dead process kept at start";
  try {
    trainer.run();
    ADD_FAILURE() << "a run of skipped steps ended as a success";
  } catch (const polar::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("all 3 steps of this run were non-finite and skipped"));
  }
  EXPECT_FALSE(fs::exists(tmp / "run/final"));
}
