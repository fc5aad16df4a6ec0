// Sharded (ZeRO-2) checkpoints under kill -9: one rank at a time SIGKILLs itself at a named point
// of a save (POLAR_KILL_AT: before and after its optimizer shard, before and after the manifest,
// before and after the rename), then the run resumes at the same or at another world size
// (2 -> 3, 3 -> 2 Gloo ranks). The resume must start from the newest *complete* checkpoint and
// end bit-identical to a run that was never killed and switched world size at the same step;
// no staging directory may be left. Then a chain through two kills, 4 -> 2 -> 3 ranks: one
// chain in the suite, every save point at 4 and 2 ranks with POLAR_ZERO_KILL_MATRIX=full
// (scripts/zero_kill_matrix.sh).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>

#include "common/tiny_data.h"
#include "dist/dist_test_util.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/verify.h"
#include "polar/train/optimizer.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using polar::testing::free_tcp_port;
using polar::testing::max_parameter_difference;
using polar::testing::polar_run_binary;
using polar::testing::Subprocess;
using polar::testing::TempDir;

namespace {

constexpr int64_t kSteps = 6;
constexpr int64_t kEvery = 2;  // checkpoints at 2, 4, 6; the kills hit the second one (step 4)

struct Outcome {
  int code = 0;
  std::string output;
};

class ZeroKill : public ::testing::Test {
 protected:
  void SetUp() override { polar::testing::write_copy_task_dataset(tmp_ / "data", 96, 8); }

  std::string config(const std::string& run) {
    auto j =
        nlohmann::json::parse(polar::testing::tiny_train_config(tmp_ / "data", tmp_ / run, steps_));
    j["train"]["lr"] = 1e-3;
    j["train"]["zero"] = 2;
    j["train"]["dist_timeout_s"] = 30;
    j["run"]["checkpoint_every"] = kEvery;
    j["run"]["keep_last"] = 5;
    const std::string path = tmp_ / (run + ".json");
    if (!fs::exists(path)) std::ofstream(path) << j.dump(2);
    return path;
  }
  std::string run_dir(const std::string& run) { return tmp_ / run; }
  std::string final_model(const std::string& run) {
    return tmp_ / (run + "/final/model.safetensors");
  }

  Outcome train(const std::string& run, int nproc, std::vector<std::string> extra = {},
                const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> argv{polar_run_binary(),
                                  "--nproc-per-node",
                                  std::to_string(nproc),
                                  "--master-port",
                                  std::to_string(free_tcp_port()),
                                  "--stop-grace-seconds",
                                  "3",
                                  "train",
                                  "--config",
                                  config(run)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto full_env = env;
    full_env["OMP_NUM_THREADS"] = "1";
    Subprocess proc(argv, full_env);
    Outcome out;
    out.code = proc.wait(300s);
    out.output = proc.output();
    return out;
  }
  void train_ok(const std::string& run, int nproc, std::vector<std::string> extra = {}) {
    const Outcome out = train(run, nproc, std::move(extra));
    ASSERT_EQ(out.code, 0) << out.output;
  }

  // The run that was never killed: `from` ranks straight through when `to` is the same;
  // otherwise `from` ranks stop cleanly at step `at` and `to` ranks resume from there.
  std::string reference(int from, int64_t at, int to) {
    const std::string run = from == to ? "straight_" + std::to_string(from)
                                       : "switched_" + std::to_string(from) + "_" +
                                             std::to_string(at) + "_" + std::to_string(to);
    if (fs::exists(final_model(run))) return run;
    if (from == to) {
      train_ok(run, from);
    } else {
      train_ok(run, from, {"--set", "run.stop_after_steps=" + std::to_string(at)});
      train_ok(run, to, {"--resume"});
    }
    return run;
  }

  // Checks what a resume of `run` would load after a kill of a `world`-rank run: the newest
  // complete checkpoint is step `at`, whole, with every rank's optimizer shard.
  void expect_latest(const std::string& run, int world, int64_t at) {
    const auto latest = polar::find_latest_checkpoint(run_dir(run));
    ASSERT_TRUE(latest.has_value());
    EXPECT_EQ(fs::path(*latest).filename().string(), "checkpoint-" + std::to_string(at));
    EXPECT_NO_THROW(polar::verify_checkpoint_checksums(*latest));
    for (int r = 0; r < world; ++r)
      EXPECT_TRUE(fs::exists(fs::path(*latest) / polar::optimizer_shard_file(r, world))) << r;
    EXPECT_EQ(polar::load_trainer_state(*latest).step, at);
  }
  // A killed run: non-zero, the dead rank named with its signal.
  void kill(const std::string& run, int world, const std::string& point, int rank,
            std::vector<std::string> extra = {}) {
    const Outcome killed =
        train(run, world, std::move(extra),
              {{"POLAR_KILL_AT", point}, {"POLAR_KILL_RANK", std::to_string(rank)}});
    ASSERT_NE(killed.code, 0) << killed.output;
    ASSERT_NE(
        killed.output.find("rank " + std::to_string(rank) + " (local rank " + std::to_string(rank)),
        std::string::npos)
        << killed.output;
    ASSERT_NE(killed.output.find("killed by signal 9"), std::string::npos) << killed.output;
  }
  void expect_no_staging(const std::string& run) {
    for (const auto& e : fs::directory_iterator(run_dir(run))) {
      const std::string name = e.path().filename().string();
      EXPECT_EQ(name.find(".staging"), std::string::npos) << name;
      EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
      EXPECT_EQ(name.find(".old"), std::string::npos) << name;
    }
  }

  int64_t steps_ = kSteps;
  TempDir tmp_;
};

struct KillCase {
  int world;           // ranks of the run that is killed
  std::string point;   // kill point (src: trainer.cpp stage_optimizer_state, save_checkpoint)
  int rank;            // the rank that dies there
  int resume_world;    // ranks of the resumed run
  int64_t resumes_at;  // the newest complete checkpoint at the kill
};

}  // namespace

TEST_F(ZeroKill, EveryRankKilledAtEveryPointOfASaveResumesExactly) {
  const std::vector<KillCase> cases{
      {2, "save.staged", 1, 2, 2},           // staging made, no shard written yet
      {2, "save.shard_written", 0, 3, 2},    // own shard written, the peer's maybe not
      {2, "save.model_written", 0, 2, 2},    // rank 0 wrote the weights, not the rest
      {3, "save.before_manifest", 0, 2, 2},  // every file but the checksums manifest
      {3, "save.before_commit", 0, 3, 2},    // complete in staging, not renamed into place
      {3, "save.shard_written", 1, 3, 2},
      {3, "save.committed", 2, 2, 4},  // renamed: the new checkpoint counts
  };
  const auto started = std::chrono::steady_clock::now();
  for (size_t i = 0; i < cases.size(); ++i) {
    const KillCase& c = cases[i];
    SCOPED_TRACE(c.point + " on rank " + std::to_string(c.rank) + " of " + std::to_string(c.world) +
                 ", resumed at " + std::to_string(c.resume_world));
    const std::string run = "killed" + std::to_string(i);
    const Outcome killed =
        train(run, c.world, {},
              {{"POLAR_KILL_AT", c.point + "@2"}, {"POLAR_KILL_RANK", std::to_string(c.rank)}});
    ASSERT_NE(killed.code, 0) << killed.output;
    ASSERT_NE(killed.output.find("rank " + std::to_string(c.rank) + " (local rank " +
                                 std::to_string(c.rank)),
              std::string::npos)
        << killed.output;
    ASSERT_NE(killed.output.find("killed by signal 9"), std::string::npos) << killed.output;

    // What a resume would load: the newest complete checkpoint, whole and self-consistent.
    const auto latest = polar::find_latest_checkpoint(run_dir(run));
    ASSERT_TRUE(latest.has_value());
    EXPECT_EQ(fs::path(*latest).filename().string(), "checkpoint-" + std::to_string(c.resumes_at));
    EXPECT_NO_THROW(polar::verify_checkpoint_checksums(*latest));
    for (int r = 0; r < c.world; ++r)
      EXPECT_TRUE(fs::exists(fs::path(*latest) / polar::optimizer_shard_file(r, c.world))) << r;
    EXPECT_EQ(polar::load_trainer_state(*latest).step, c.resumes_at);

    const Outcome resumed = train(run, c.resume_world, {"--resume"});
    ASSERT_EQ(resumed.code, 0) << resumed.output;
    EXPECT_NE(resumed.output.find("resumed from " + *latest), std::string::npos) << resumed.output;
    const std::string ref = reference(c.world, c.resumes_at, c.resume_world);
    EXPECT_EQ(max_parameter_difference(final_model(ref), final_model(run)), 0.0);
    for (const auto& e : fs::directory_iterator(run_dir(run))) {
      const std::string name = e.path().filename().string();
      EXPECT_EQ(name.find(".staging"), std::string::npos) << name;
      EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
      EXPECT_EQ(name.find(".old"), std::string::npos) << name;
    }
  }
  std::cout << "[ zero ] " << cases.size() << " kills during sharded saves resumed exactly in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()
            << " s\n";
}

namespace {

// Save points in the order a save reaches them.
const std::vector<std::string> kSavePoints = {"save.staged",        "save.shard_written",
                                              "save.model_written", "save.before_manifest",
                                              "save.before_commit", "save.committed"};

struct ChainCase {
  std::string point4;  // killed at the second save (step 4) of the 4-rank run, on rank4
  int rank4;
  std::string point2;  // killed at the second save of the 2-rank resume, on rank2
  int rank2;
};

// Only rank 0 writes the model and the manifest and renames: those points fire on rank 0 only.
bool rank0_only(const std::string& point) {
  return point == "save.model_written" || point == "save.before_manifest" ||
         point == "save.before_commit";
}

// The newest complete checkpoint after a kill in the save of `killed_save_step`: the one before
// it, unless the rename was done.
int64_t complete_after(const std::string& point, int64_t killed_save_step) {
  return point == "save.committed" ? killed_save_step : killed_save_step - kEvery;
}

}  // namespace

// 4 ranks killed mid-save, resumed at 2 ranks, killed mid-save again, resumed at 3 ranks to the
// end: every resume loads the newest complete checkpoint, and the end equals a run that was never
// killed and switched 4 -> 2 -> 3 ranks at the same steps, bit for bit.
TEST_F(ZeroKill, FourThenTwoThenThreeRanksThroughTwoKillsResumeExactly) {
  steps_ = 10;  // checkpoints at 2, 4, 6, 8, 10
  std::vector<ChainCase> cases = {{"save.shard_written", 3, "save.before_manifest", 0}};
  const char* matrix = std::getenv("POLAR_ZERO_KILL_MATRIX");
  if (matrix && std::string(matrix) == "full") {
    cases.clear();
    for (size_t i = 0; i < kSavePoints.size(); ++i) {
      for (int r4 = 0; r4 < (rank0_only(kSavePoints[i]) ? 1 : 4); ++r4) {
        const std::string& p2 = kSavePoints[(i + 1 + r4) % kSavePoints.size()];
        cases.push_back(
            {kSavePoints[i], r4, p2, rank0_only(p2) ? 0 : static_cast<int>(i + r4) % 2});
      }
    }
  }
  const auto started = std::chrono::steady_clock::now();
  for (size_t i = 0; i < cases.size(); ++i) {
    const ChainCase& c = cases[i];
    SCOPED_TRACE(c.point4 + " on rank " + std::to_string(c.rank4) + " of 4, then " + c.point2 +
                 " on rank " + std::to_string(c.rank2) + " of 2");
    const std::string run = "chain" + std::to_string(i);
    kill(run, 4, c.point4 + "@2", c.rank4);
    const int64_t at4 = complete_after(c.point4, 4);
    expect_latest(run, 4, at4);
    // The 2-rank resume saves at at4 + 2, at4 + 4, ...: the kill hits the second of them.
    kill(run, 2, c.point2 + "@2", c.rank2, {"--resume"});
    const int64_t at2 = complete_after(c.point2, at4 + 2 * kEvery);
    expect_latest(run, 2, at2);
    const Outcome resumed = train(run, 3, {"--resume"});
    ASSERT_EQ(resumed.code, 0) << resumed.output;
    expect_no_staging(run);

    const std::string ref = "chain_ref_" + std::to_string(at4) + "_" + std::to_string(at2);
    if (!fs::exists(final_model(ref))) {
      train_ok(ref, 4, {"--set", "run.stop_after_steps=" + std::to_string(at4)});
      train_ok(ref, 2, {"--resume", "--set", "run.stop_after_steps=" + std::to_string(at2 - at4)});
      train_ok(ref, 3, {"--resume"});
    }
    EXPECT_EQ(max_parameter_difference(final_model(ref), final_model(run)), 0.0);
  }
  std::cout << "[ zero ] " << cases.size() << " chains of two kills (4 -> 2 -> 3 ranks) resumed "
            << "exactly in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()
            << " s\n";
}
