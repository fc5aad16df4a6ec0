// The out-of-core pre-training builder: the same groups whatever the partition count (budget),
// threads, workers (with the merge), file order and compression; duplicates and copies dropped
// and counted; the paper's pairing scheme; bad input deep in a compressed file; a killed build.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "../tokenizer/tiny_tokenizer.h"
#include "polar/common/error.h"
#include "polar/data/builder.h"
#include "polar/data/shards.h"

namespace polar {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using polar_test::read_bytes;
using polar_test::TempDir;
using polar_test::write_text;

// The built-in synthetic data (tools/gen_data.py), small: 200 prompts x 16 policies x 2 answers.
const std::string& builtin_trajectories() {
  static const TempDir gen_dir;  // removed at exit
  static const std::string path = [] {
    const std::string dir = gen_dir.path();
    const std::string cmd =
        "python3 " POLAR_SOURCE_DIR "/tools/gen_data.py --out " + dir +
        " --pretrain-prompts 200 --finetune-prompts 4 --test-prompts 4 >/dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("gen_data.py failed");
    return dir + "/pretrain.jsonl";
  }();
  return path;
}

void write_gzip(const std::string& path, const std::string& text, int members = 1) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  const size_t step = text.size() / static_cast<size_t>(members) + 1;
  for (size_t at = 0; at < text.size();
       at += step) {  // several members: gzopen per chunk in append mode
    const std::string part = text.substr(at, step);
    if (at > 0) {
      gzclose(f);
      f = gzopen(path.c_str(), "ab");
    }
    ASSERT_EQ(gzwrite(f, part.data(), static_cast<unsigned>(part.size())),
              static_cast<int>(part.size()));
  }
  gzclose(f);
}

void write_zstd(const std::string& path, const std::string& text) {
  std::string out(ZSTD_compressBound(text.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 3);
  ASSERT_FALSE(ZSTD_isError(n));
  out.resize(n);
  write_text(path, out);
}

// Every group of both splits as token vectors and category names, in stored order.
using GroupList = std::vector<
    std::tuple<std::string, std::vector<int32_t>, std::vector<std::vector<int32_t>>, std::string>>;
GroupList read_groups(const std::string& dir) {
  GroupList out;
  for (const char* split : {"train", "eval"}) {
    const GroupDataset ds = GroupDataset::open(dir + "/" + split);
    for (int64_t i = 0; i < ds.size(); ++i) {
      const GroupRef g = ds.group(i);
      std::vector<std::vector<int32_t>> cands;
      for (const auto& c : g.candidates) cands.emplace_back(c.data, c.data + c.size);
      out.emplace_back(split, std::vector<int32_t>(g.prefix.data, g.prefix.data + g.prefix.size),
                       cands, ds.categories()[static_cast<size_t>(g.category)]);
    }
  }
  return out;
}

// The manifest without what legitimately differs between equivalent builds.
json comparable(json m) {
  m.erase("build");
  m["settings"].erase("trajectories");
  m["settings"]["tokenizer"].erase("path");
  return m;
}

class PretrainStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    o.trajectories = {builtin_trajectories()};
    o.tokenizer = polar_test::tiny_tokenizer_dir();
    o.eval_fraction = 0.2;
    o.seed = 5;
    o.progress = false;
  }
  json build(const std::string& name) {
    o.output = dir.file(name);
    return build_pretrain_dataset(o);
  }
  json build_workers(const std::string& name, int workers) {
    o.output = dir.file(name);
    o.num_workers = workers;
    for (int i = 0; i < workers; ++i) {
      o.worker_index = i;
      build_pretrain_dataset(o);
    }
    o.num_workers = 1;
    o.worker_index = 0;
    return merge_pretrain_parts(dir.file(name), workers, false);
  }
  TempDir dir;
  PretrainBuildOptions o;
};

TEST_F(PretrainStreamTest, SameGroupsForEveryBudgetThreadCountAndWorkerCount) {
  const int64_t bytes = static_cast<int64_t>(fs::file_size(builtin_trajectories()));
  o.threads = 1;
  o.memory_budget = int64_t{1} << 30;  // one partition
  const json base = build("base");
  EXPECT_EQ(base["build"]["partitions"], 1);
  const GroupList groups = read_groups(dir.file("base"));
  ASSERT_GT(groups.size(), 500u);

  for (int64_t partitions : {4, 64}) {  // the budget that gives this many partitions of the input
    o.memory_budget = (bytes / partitions + 1) * 5;
    const json m = build("p" + std::to_string(partitions));
    EXPECT_EQ(m["build"]["partitions"], partitions);
    EXPECT_EQ(comparable(m), comparable(base)) << partitions;
    EXPECT_EQ(read_groups(dir.file("p" + std::to_string(partitions))), groups) << partitions;
  }
  o.memory_budget = (bytes / 4 + 1) * 5;
  o.threads = 2;
  EXPECT_EQ(comparable(build("t2")), comparable(base));
  EXPECT_EQ(read_groups(dir.file("t2")), groups);
  for (int workers : {2, 3}) {  // one worker is the builds above
    const std::string name = "w" + std::to_string(workers);
    EXPECT_EQ(comparable(build_workers(name, workers)), comparable(base)) << workers;
    EXPECT_EQ(read_groups(dir.file(name)), groups) << workers;
    EXPECT_FALSE(fs::exists(pretrain_part_dir(dir.file(name), 0, workers)))
        << "parts are removed after the merge";
  }
}

// One prompt whose trajectories alone exceed a partition's share of the budget cannot be split:
// the build goes on (same groups as with a large budget) and the manifest says how large the
// largest partition was, above the share (a warning says so while building).
TEST_F(PretrainStreamTest, OversizedSinglePromptPartitionBuildsAndIsReported) {
  std::string text;
  for (int p = 0; p < 8; ++p) {
    for (int s = 0; s < 60; ++s) {
      text += json{{"prompt", "one huge prompt"},
                   {"policy", "p" + std::to_string(p)},
                   {"response", "answer " + std::to_string(s) + " of " + std::to_string(p) +
                                    std::string(200, 'x')}}
                  .dump() +
              "\n";
    }
  }
  for (int i = 0; i < 20; ++i) {
    for (int p = 0; p < 3; ++p) {
      for (int s = 0; s < 2; ++s) {
        text += json{{"prompt", "small " + std::to_string(i)},
                     {"policy", "p" + std::to_string(p)},
                     {"response", "r" + std::to_string(s) + " " + std::to_string(i)}}
                    .dump() +
                "\n";
      }
    }
  }
  write_text(dir.file("huge.jsonl"), text);
  o.trajectories = {dir.file("huge.jsonl")};
  o.threads = 1;
  o.response_filter.enabled = false;  // the padding is a loop; this test is about partition sizes
  o.memory_budget = int64_t{1} << 30;
  const json base = build("large-budget");
  EXPECT_EQ(base["build"]["partitions"], 1);
  o.memory_budget =
      64 * 1024;  // the smallest budget: a partition's share is 13 KB, the prompt ~120 KB
  const json m = build("tiny-budget");
  EXPECT_GT(m["build"]["partitions"], 4);
  EXPECT_GT(m["build"]["largest_partition_bytes"].get<int64_t>(), 100 * 1000);
  EXPECT_GT(m["build"]["largest_partition_bytes"].get<int64_t>(), o.memory_budget / 5);
  EXPECT_EQ(comparable(m), comparable(base));
  EXPECT_EQ(read_groups(dir.file("tiny-budget")), read_groups(dir.file("large-budget")));
  EXPECT_EQ(m["prompts"]["total"], 21);
}

// What changed against the in-memory builder on the built-in data: it made floor(n / 2) groups
// for each (prompt, policy) with n answers; every policy answers twice, so a policy that gave the
// same answer twice is now one duplicate and no group (its group had positive == reference), and
// groups whose negative copies the positive are dropped. Nothing else is lost.
TEST_F(PretrainStreamTest, GroupCountsAccountForEveryGroupOfTheInMemoryBuilder) {
  std::map<std::pair<std::string, std::string>, int64_t> answers;
  for (const auto& r : read_trajectories(builtin_trajectories(), false, nullptr))
    ++answers[{r.prompt, r.policy}];
  int64_t in_memory_groups = 0;
  for (const auto& [key, n] : answers) {
    ASSERT_EQ(n, 2) << key.first;
    in_memory_groups += n / 2;
  }
  const json m = build("base");
  const int64_t groups =
      m["splits"]["train"]["groups"].get<int64_t>() + m["splits"]["eval"]["groups"].get<int64_t>();
  const int64_t duplicates = m["records"]["duplicates"],
                copies = m["groups_dropped"]["negative_equals_positive"];
  EXPECT_GT(duplicates, 0);
  EXPECT_GT(copies, 0);
  EXPECT_EQ(m["truncation"]["groups_dropped_too_long"], 0);
  EXPECT_EQ(groups + duplicates + copies, in_memory_groups);
  std::printf(
      "in-memory builder %lld groups; now %lld groups, %lld duplicates (positive == reference), "
      "%lld dropped as negative == positive\n",
      static_cast<long long>(in_memory_groups), static_cast<long long>(groups),
      static_cast<long long>(duplicates), static_cast<long long>(copies));
}

TEST_F(PretrainStreamTest, FileOrderAndCompressionDoNotMatter) {
  const json base = build("base");
  // The same records split over three files, shuffled, two of them compressed.
  std::vector<std::string> lines;
  std::istringstream in(read_bytes(builtin_trajectories()));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string parts[3];
  for (size_t i = 0; i < lines.size(); ++i)
    parts[(i * 7919) % 3] += lines[lines.size() - 1 - i] + "\n";
  write_text(dir.file("c.jsonl"), parts[0]);
  write_gzip(dir.file("a.jsonl.gz"), parts[1], 3);
  write_zstd(dir.file("b.jsonl.zst"), parts[2]);
  o.trajectories = {dir.file("c.jsonl"), dir.file("*.jsonl.[gz]*")};
  const json m = build("mixed");
  EXPECT_EQ(m["settings"]["trajectories"].size(), 3u);
  EXPECT_EQ(comparable(m), comparable(base));
  EXPECT_EQ(read_groups(dir.file("mixed")), read_groups(dir.file("base")));

  o.trajectories = {dir.file("nothing-*.jsonl")};
  try {
    build("none");
    FAIL() << "a pattern matching nothing must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nothing-*.jsonl: no such file"), std::string::npos)
        << e.what();
  }
}

TEST_F(PretrainStreamTest, DuplicatesAndCopiesAreDroppedAndCounted) {
  std::string text;
  auto add = [&](const std::string& prompt, const std::string& policy,
                 const std::string& response) {
    text += json{{"prompt", prompt}, {"policy", policy}, {"response", response}}.dump() + "\n";
  };
  for (int i = 0; i < 30; ++i) {
    const std::string p = "q" + std::to_string(i);
    add(p, "A", "a1 " + p);
    add(p, "A", "a2 " + p);
    add(p, "A", "a1 " + p);  // a duplicate of A's first answer
    add(p, "B", "b1 " + p);
    add(p, "B", i % 3 ? "b2 " + p : "b1 " + p);  // B repeats itself on every third prompt
    add(p, "C", "a2 " + p);                      // C's answer equals one of A's
  }
  write_text(dir.file("dup.jsonl"), text);
  o.trajectories = {dir.file("dup.jsonl")};
  o.eval_fraction = 0;
  const json m = build("dup");
  EXPECT_EQ(m["records"]["accepted"], 180);
  EXPECT_EQ(m["records"]["duplicates"], 30 + 10);
  // Per prompt: A gives one group, B one on 20 prompts. A's negative comes from B or C, and C's
  // answer copies A's positive in about a quarter of A's groups: those are dropped.
  const int64_t written = m["splits"]["train"]["groups"];
  const int64_t copies = m["groups_dropped"]["negative_equals_positive"];
  EXPECT_EQ(m["groups_dropped"]["positive_equals_reference"],
            0);  // impossible once duplicates are gone
  EXPECT_GT(copies, 0);
  EXPECT_EQ(written + copies, 50);
  EXPECT_EQ(m["planned_groups"], written);
}

TEST_F(PretrainStreamTest, PaperSchemeDrawsPoliciesUniformly) {
  // Policy A has 10 answers per prompt, B and C two each: all-pairs gives A 5 of 7 groups, the
  // paper's scheme draws the reference's policy uniformly.
  std::string text;
  for (int i = 0; i < 300; ++i) {
    const std::string p = "prompt " + std::to_string(i);
    for (int k = 0; k < 10; ++k)
      text +=
          json{{"prompt", p}, {"policy", "A"}, {"response", "A" + std::to_string(k)}}.dump() + "\n";
    for (const char* b : {"B", "C"}) {
      for (int k = 0; k < 2; ++k)
        text +=
            json{{"prompt", p}, {"policy", b}, {"response", b + std::to_string(k)}}.dump() + "\n";
    }
  }
  write_text(dir.file("skew.jsonl"), text);
  const auto records = read_trajectories(dir.file("skew.jsonl"), false, nullptr);
  PairingOptions p;
  p.scheme = PairingScheme::Paper;
  p.passes = 2;
  const GroupPlan plan = plan_pretrain_groups(records, p);
  ASSERT_EQ(plan.groups.size(), 600u);  // one group per prompt per pass
  std::map<std::string, int> by_policy;
  for (const auto& g : plan.groups) {
    const auto& ref = records[static_cast<size_t>(g.reference)];
    EXPECT_EQ(records[static_cast<size_t>(g.candidates[0])].policy, ref.policy);
    EXPECT_NE(g.reference, g.candidates[0]);
    ++by_policy[ref.policy];
  }
  for (const char* policy : {"A", "B", "C"}) {  // 200 expected each; 5 sigma is about 58
    EXPECT_NEAR(by_policy[policy], 200, 58) << policy;
  }
  const GroupPlan all = plan_pretrain_groups(records, PairingOptions{});
  EXPECT_EQ(all.groups.size(), 300u * 7);
}

TEST_F(PretrainStreamTest, BadLineDeepInACompressedFileNamesFileAndLineAndLeavesNothing) {
  std::string text;
  for (int i = 0; i < 60000; ++i) {
    text += json{{"prompt", "p" + std::to_string(i % 997)},
                 {"policy", "P" + std::to_string(i % 5)},
                 {"response", "answer number " + std::to_string(i)}}
                .dump() +
            "\n";
    if (i == 54320)
      text += "{\"prompt\": \"p\", \"policy\": \"P0\", \"response\": 7}\n";  // line 54322
  }
  write_gzip(dir.file("big.jsonl.gz"), text);
  o.trajectories = {dir.file("big.jsonl.gz")};
  o.memory_budget = int64_t{1} << 20;  // many partitions
  try {
    build("bad");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("big.jsonl.gz:54322: \"response\""), std::string::npos)
        << e.what();
  }
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename().string().find("bad"), std::string::npos)
        << "left behind: " << e.path();
  }
  // A truncated compressed file is an error too, not a short dataset.
  const std::string whole = read_bytes(dir.file("big.jsonl.gz"));
  write_text(dir.file("cut.jsonl.gz"), whole.substr(0, whole.size() / 2));
  o.trajectories = {dir.file("cut.jsonl.gz")};
  o.skip_invalid = true;
  EXPECT_THROW(build("cut"), Error);
  EXPECT_FALSE(fs::exists(dir.file("cut")));
}

int run_quiet(const std::string& command) {
  const int status = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(PretrainStreamTest, KilledBuildLeavesNoDatasetAndTheNextBuildCleansUp) {
  const std::string polar = std::string(POLAR_BINARY_DIR) + "/polar";
  if (!fs::exists(polar)) GTEST_SKIP() << "polar binary not built";
  std::string text;
  for (int i = 0; i < 200000; ++i) {
    text += json{{"prompt", "p" + std::to_string(i % 4999)},
                 {"policy", "P" + std::to_string(i % 7)},
                 {"response", "a longer answer, number " + std::to_string(i)}}
                .dump() +
            "\n";
  }
  write_text(dir.file("big.jsonl"), text);
  const std::string out = dir.file("killed");
  const std::string args = polar + " data pretrain --no-progress --threads 1 --trajectories " +
                           dir.file("big.jsonl") + " --tokenizer " +
                           polar_test::tiny_tokenizer_dir() + " --output " + out;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + args + " >/dev/null 2>&1").c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Kill it once the spill files exist (mid-build).
  bool staged = false;
  for (int i = 0; i < 3000 && !staged; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    staged = fs::exists(out + ".tmp-" + std::to_string(child) + "/spill-" + std::to_string(child));
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(staged) << "the build finished before it could be killed";
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(fs::exists(out)) << "a killed build must not leave a dataset";
  EXPECT_TRUE(fs::exists(out + ".tmp-" + std::to_string(child)));
  EXPECT_EQ(run_quiet(args), 0);
  EXPECT_TRUE(fs::exists(out + "/manifest.json"));
  EXPECT_FALSE(fs::exists(out + ".tmp-" + std::to_string(child)))
      << "the next build removes the dead one's staging";
}

TEST_F(PretrainStreamTest, MergeRefusesMissingOrMismatchedParts) {
  o.output = dir.file("m");
  o.num_workers = 2;
  o.worker_index = 0;
  build_pretrain_dataset(o);
  try {
    merge_pretrain_parts(dir.file("m"), 2, false);
    FAIL() << "part 1 is missing";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.part-1-of-2: missing"), std::string::npos) << e.what();
  }
  o.worker_index = 1;
  o.seed = 6;
  build_pretrain_dataset(o);
  EXPECT_THROW(merge_pretrain_parts(dir.file("m"), 2, false), Error);
  EXPECT_FALSE(fs::exists(dir.file("m")));
  EXPECT_TRUE(fs::exists(pretrain_part_dir(dir.file("m"), 0, 2)))
      << "parts stay until a merge succeeds";
}

}  // namespace
}  // namespace polar
