// DistEnv::from_environment: polar-run/torchrun variables, Slurm variables, and bad values.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "polar/common/error.h"
#include "polar/dist/dist.h"

using polar::dist::DistEnv;

namespace {

// Clears every variable DistEnv reads, sets the given ones, and restores all on destruction.
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::map<std::string, std::string>& values) {
    for (const char* name : kNames) {
      const char* old = std::getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      unsetenv(name);
    }
    for (const auto& [key, value] : values) setenv(key.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) {
      if (value) {
        setenv(name.c_str(), value->c_str(), 1);
      } else {
        unsetenv(name.c_str());
      }
    }
  }

 private:
  static constexpr const char* kNames[] = {"RANK",
                                           "WORLD_SIZE",
                                           "LOCAL_RANK",
                                           "LOCAL_WORLD_SIZE",
                                           "MASTER_ADDR",
                                           "MASTER_PORT",
                                           "TORCHELASTIC_RESTART_COUNT",
                                           "TORCHELASTIC_USE_AGENT_STORE",
                                           "SLURM_PROCID",
                                           "SLURM_NTASKS",
                                           "SLURM_LOCALID",
                                           "SLURM_NTASKS_PER_NODE",
                                           "SLURM_STEP_TASKS_PER_NODE",
                                           "SLURM_TASKS_PER_NODE",
                                           "SLURM_STEP_NODELIST",
                                           "SLURM_JOB_NODELIST",
                                           "SLURM_NODELIST",
                                           "SLURM_RESTART_COUNT"};
  std::map<std::string, std::optional<std::string>> saved_;
};

std::string error_of(const std::map<std::string, std::string>& values) {
  ScopedEnv env(values);
  try {
    DistEnv::from_environment();
  } catch (const polar::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(DistEnv, NothingSetMeansOneProcess) {
  ScopedEnv env({});
  const DistEnv e = DistEnv::from_environment();
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.world_size, 1);
  EXPECT_FALSE(e.distributed());
  EXPECT_EQ(e.restart_count, 0);
}

TEST(DistEnv, ReadsTorchrunVariables) {
  ScopedEnv env({{"RANK", "5"},
                 {"WORLD_SIZE", "8"},
                 {"LOCAL_RANK", "1"},
                 {"LOCAL_WORLD_SIZE", "4"},
                 {"MASTER_ADDR", "node7"},
                 {"MASTER_PORT", "1234"},
                 {"TORCHELASTIC_RESTART_COUNT", "2"},
                 {"SLURM_PROCID", "0"},
                 {"SLURM_NTASKS", "2"}});  // torchrun's variables win over Slurm's
  const DistEnv e = DistEnv::from_environment();
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 4);
  EXPECT_EQ(e.master_addr, "node7");
  EXPECT_EQ(e.master_port, 1234);
  EXPECT_EQ(e.restart_count, 2);
  EXPECT_TRUE(e.distributed());
  EXPECT_EQ(e.describe(), "rank 5/8 (local 1/4) via node7:1234");
}

TEST(DistEnv, JoinsTheLaunchersStoreOnlyWhenTorchrunSaysSo) {
  const std::map<std::string, std::string> base{{"RANK", "0"}, {"WORLD_SIZE", "2"}};
  for (const auto& [value, expected] :
       std::vector<std::pair<std::string, bool>>{{"True", true}, {"False", false}, {"1", false}}) {
    auto values = base;
    values["TORCHELASTIC_USE_AGENT_STORE"] = value;
    ScopedEnv env(values);
    const DistEnv e = DistEnv::from_environment();
    EXPECT_EQ(e.agent_store, expected) << value;
    EXPECT_EQ(e.describe().find("the launcher's store") != std::string::npos, expected);
  }
  ScopedEnv env(base);
  EXPECT_FALSE(DistEnv::from_environment().agent_store);
}

TEST(DistEnv, ReadsSlurmVariables) {
  {
    ScopedEnv env({{"SLURM_PROCID", "6"},
                   {"SLURM_NTASKS", "8"},
                   {"SLURM_LOCALID", "2"},
                   {"SLURM_TASKS_PER_NODE", "4(x2)"},
                   {"SLURM_JOB_NODELIST", "gpu[03-05,09],cpu1"},
                   {"SLURM_RESTART_COUNT", "1"}});
    const DistEnv e = DistEnv::from_environment();
    EXPECT_EQ(e.rank, 6);
    EXPECT_EQ(e.world_size, 8);
    EXPECT_EQ(e.local_rank, 2);
    EXPECT_EQ(e.local_world_size, 4);
    EXPECT_EQ(e.master_addr, "gpu03");
    EXPECT_EQ(e.master_port, 29500);
    EXPECT_EQ(e.restart_count, 1);
  }
  {
    ScopedEnv env({{"SLURM_PROCID", "0"},
                   {"SLURM_NTASKS", "2"},
                   {"SLURM_JOB_NODELIST", "a1,b2"},
                   {"MASTER_ADDR", "10.1.2.3"},
                   {"MASTER_PORT", "29600"}});
    const DistEnv e = DistEnv::from_environment();
    EXPECT_EQ(e.master_addr, "10.1.2.3");  // an explicit MASTER_ADDR wins over the node list
    EXPECT_EQ(e.master_port, 29600);
    EXPECT_EQ(e.local_world_size, 1);
  }
}

TEST(DistEnv, RejectsBadValuesNamingTheVariable) {
  EXPECT_NE(error_of({{"RANK", "x1"}, {"WORLD_SIZE", "2"}}).find("RANK='x1'"), std::string::npos);
  EXPECT_NE(
      error_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("rank 2 is outside the world of size 2"),
      std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}}).find("RANK and WORLD_SIZE must be set together"),
            std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}})
                .find("MASTER_PORT=70000"),
            std::string::npos);
  EXPECT_NE(
      error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "3"}, {"LOCAL_WORLD_SIZE", "2"}})
          .find("local rank 3"),
      std::string::npos);
  EXPECT_NE(error_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "-1"}}).find("SLURM_NTASKS='-1'"),
            std::string::npos);
}
