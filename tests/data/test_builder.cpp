// Dataset builders: POLAR group planning, determinism per seed, the eval split, manifests,
// atomic output, and the `polar data` command.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

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

// Ten prompts answered by policies P0..P3 with 1-3 trajectories each, plus one prompt with a
// single policy and one where no policy has two trajectories.
std::string trajectories_jsonl() {
  std::string out;
  auto add = [&](const std::string& prompt, int policy, const std::string& response,
                 const std::string& cat) {
    out += json{{"prompt", prompt},
                {"policy", "P" + std::to_string(policy)},
                {"response", response},
                {"category", cat},
                {"extra", 1}}
               .dump() +
           "\n";
  };
  for (int i = 0; i < 10; ++i) {
    for (int k = 0; k < 4; ++k) {
      for (int j = 0; j < (k + i) % 3 + 1; ++j) {
        add("question " + std::to_string(i) + ":", k,
            "P" + std::to_string(k) + " says " + std::to_string(i) + " v" + std::to_string(j),
            i % 2 ? "math" : "chat");
      }
    }
  }
  for (int j = 0; j < 3; ++j) add("lonely prompt", 0, "lonely " + std::to_string(j), "chat");
  for (int k = 0; k < 4; ++k) add("singles prompt", k, "single " + std::to_string(k), "chat");
  return out;
}

PairingOptions pairing(int64_t negatives, int64_t groups_per_prompt, uint64_t seed) {
  PairingOptions o;
  o.negatives = negatives;
  o.groups_per_prompt = groups_per_prompt;
  o.seed = seed;
  return o;
}

int64_t expected_groups_for(int i) {
  int64_t n = 0;
  for (int k = 0; k < 4; ++k) n += ((k + i) % 3 + 1) / 2;
  return n;
}

class BuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_text(dir.file("traj.jsonl"), trajectories_jsonl());
    options.trajectories = {dir.file("traj.jsonl")};
    options.tokenizer = polar_test::tiny_tokenizer_dir();
    options.output = dir.file("out");
    options.negatives = 2;
    options.eval_fraction = 0.3;
  }
  TempDir dir;
  PretrainBuildOptions options;
};

TEST_F(BuilderTest, PlanPairsWithinAPolicyAndNegativesFromDistinctOthers) {
  const auto records = read_trajectories(dir.file("traj.jsonl"), false, nullptr);
  const GroupPlan plan = plan_pretrain_groups(records, pairing(2, 0, 7));
  ASSERT_EQ(plan.prompts.size(), 12u);
  const std::map<std::string, int64_t> skipped = {{"fewer_policies_than_negatives_plus_one", 1},
                                                  {"no_policy_with_two_trajectories", 1}};
  EXPECT_EQ(plan.counts.skipped_prompts_by_reason, skipped);
  EXPECT_EQ(plan.counts.duplicates, 0);
  std::map<int64_t, int64_t> groups_per_prompt;
  std::map<int64_t, std::set<int64_t>> used_as_pair;
  for (const auto& g : plan.groups) {
    ASSERT_EQ(g.candidates.size(), 3u);
    const auto& ref = records[g.reference];
    const auto& pos = records[g.candidates[0]];
    EXPECT_NE(g.reference, g.candidates[0]);
    EXPECT_EQ(ref.policy, pos.policy);
    std::set<std::string> negative_policies;
    for (size_t c = 1; c < 3; ++c) {
      const auto& neg = records[g.candidates[c]];
      EXPECT_NE(neg.policy, ref.policy);
      EXPECT_EQ(neg.prompt, ref.prompt);
      negative_policies.insert(neg.policy);
    }
    EXPECT_EQ(negative_policies.size(), 2u) << "negatives must come from distinct policies";
    EXPECT_EQ(plan.prompts[g.prompt], ref.prompt);
    EXPECT_TRUE(used_as_pair[g.prompt].insert(g.reference).second) << "pairs must be disjoint";
    EXPECT_TRUE(used_as_pair[g.prompt].insert(g.candidates[0]).second) << "pairs must be disjoint";
    ++groups_per_prompt[g.prompt];
  }
  int64_t total = 0;
  for (int i = 0; i < 10; ++i) {
    const auto it =
        std::find(plan.prompts.begin(), plan.prompts.end(), "question " + std::to_string(i) + ":");
    ASSERT_NE(it, plan.prompts.end());
    EXPECT_EQ(groups_per_prompt[it - plan.prompts.begin()], expected_groups_for(i)) << i;
    total += expected_groups_for(i);
  }
  EXPECT_EQ(static_cast<int64_t>(plan.groups.size()), total);

  // Same seed, same plan; the cap holds; K = 4 leaves no prompt with 5 policies.
  const GroupPlan again = plan_pretrain_groups(records, pairing(2, 0, 7));
  ASSERT_EQ(again.groups.size(), plan.groups.size());
  bool other_seed_differs = false;
  const GroupPlan other = plan_pretrain_groups(records, pairing(2, 0, 8));
  for (size_t i = 0; i < plan.groups.size(); ++i) {
    EXPECT_EQ(again.groups[i].candidates, plan.groups[i].candidates);
    other_seed_differs |= other.groups[i].candidates != plan.groups[i].candidates;
  }
  EXPECT_TRUE(other_seed_differs);
  const GroupPlan capped = plan_pretrain_groups(records, pairing(1, 1, 7));
  EXPECT_EQ(capped.groups.size(), 10u);  // one per question; the other two prompts form none
  EXPECT_THROW(plan_pretrain_groups(records, pairing(0, 0, 7)), Error);
  EXPECT_TRUE(plan_pretrain_groups(records, pairing(4, 0, 7)).groups.empty());
}

TEST_F(BuilderTest, EvalSplitRoundsAndIsSeeded) {
  const auto a = split_eval_prompts(10, 0.3, 1);
  EXPECT_EQ(std::count(a.begin(), a.end(), true), 3);
  EXPECT_EQ(split_eval_prompts(10, 0.3, 1), a);
  EXPECT_NE(split_eval_prompts(10, 0.3, 2), a);
  const auto none = split_eval_prompts(5, 0.0, 1);
  EXPECT_EQ(std::count(none.begin(), none.end(), true), 0);
  const auto rounded = split_eval_prompts(10, 0.05, 1);  // round(0.5) = 1
  EXPECT_EQ(std::count(rounded.begin(), rounded.end(), true), 1);
}

// Reference and candidates of a pre-training group, decoded back to response texts.
struct Decoded {
  std::string prompt, reference;
  std::vector<std::string> candidates;
};

Decoded decode_group(const Tokenizer& tok, const GroupRef& g) {
  std::vector<int32_t> prefix(g.prefix.data, g.prefix.data + g.prefix.size);
  EXPECT_EQ(prefix.front(), tok.special().bos);
  const auto sep = std::find(prefix.begin(), prefix.end(), tok.special().reward_sep);
  EXPECT_EQ(std::count(prefix.begin(), prefix.end(), tok.special().reward_sep), 1);
  Decoded d;
  d.prompt = tok.decode(
      std::vector<int32_t>(sep + 1, prefix.end()));  // pretrain: the second copy is the prompt
  const std::string first = tok.decode(std::vector<int32_t>(prefix.begin() + 1, sep));
  EXPECT_EQ(first.rfind(d.prompt, 0), 0u);
  d.reference = first.substr(d.prompt.size());
  for (const auto& c : g.candidates) {
    EXPECT_EQ(c.data[c.size - 1], tok.special().reward);
    d.candidates.push_back(tok.decode(std::vector<int32_t>(c.data, c.data + c.size - 1)));
  }
  return d;
}

TEST_F(BuilderTest, BuildsShardsManifestAndDisjointSplit) {
  const json m = build_pretrain_dataset(options);
  const std::string out = options.output;
  EXPECT_EQ(json::parse(read_bytes(out + "/manifest.json")), m);
  EXPECT_TRUE(fs::exists(out + "/tokenizer/tokenizer.model"));
  EXPECT_TRUE(fs::exists(out + "/tokenizer/polar_tokenizer.json"));
  EXPECT_EQ(m["records"]["accepted"], 86);  // 79 answers to the ten questions + 3 + 4
  EXPECT_EQ(m["prompts"]["total"], 12);
  const int64_t train_prompts = m["prompts"]["train"], eval_prompts = m["prompts"]["eval"];
  EXPECT_EQ(train_prompts + eval_prompts, 10);  // the split is by prompt hash: about 30% eval
  EXPECT_GT(eval_prompts, 0);
  EXPECT_GT(train_prompts, 0);
  EXPECT_EQ(m["prompts"]["skipped"], 2);
  EXPECT_EQ(m["categories"], (std::vector<std::string>{"chat", "math"}));
  EXPECT_EQ(m["settings"]["negatives"], 2);
  EXPECT_EQ(m["truncation"]["groups_dropped_too_long"], 0);

  const Tokenizer tok = Tokenizer::load(out + "/tokenizer");
  std::map<std::string, std::string> policy_of;  // response text -> policy
  for (const auto& r : read_trajectories(dir.file("traj.jsonl"), false, nullptr))
    policy_of[r.response] = r.policy;
  std::set<std::string> prompts[2];
  int64_t groups = 0;
  for (int s = 0; s < 2; ++s) {
    const std::string name = s == 0 ? "train" : "eval";
    const GroupDataset ds = GroupDataset::open(out + "/" + name);
    EXPECT_EQ(ds.template_kind(), TemplateKind::Pretrain);
    EXPECT_EQ(m["splits"][name]["groups"], ds.size());
    EXPECT_EQ(m["splits"][name]["sequences"], 3 * ds.size());
    EXPECT_EQ(m["splits"][name]["pairs"], 2 * ds.size());
    EXPECT_EQ(m["splits"][name]["stored_tokens"], ds.tokens());
    groups += ds.size();
    for (int64_t i = 0; i < ds.size(); ++i) {
      const GroupRef g = ds.group(i);
      const Decoded d = decode_group(tok, g);
      prompts[s].insert(d.prompt);
      ASSERT_EQ(d.candidates.size(), 3u);
      const std::string a = policy_of.at(d.reference);
      EXPECT_EQ(policy_of.at(d.candidates[0]), a);
      EXPECT_NE(d.candidates[0], d.reference);
      const std::string b1 = policy_of.at(d.candidates[1]), b2 = policy_of.at(d.candidates[2]);
      EXPECT_TRUE(b1 != a && b2 != a && b1 != b2) << a << " " << b1 << " " << b2;
      EXPECT_EQ(ds.categories()[g.category], d.prompt[9] % 2 ? "math" : "chat") << d.prompt;
    }
  }
  EXPECT_EQ(static_cast<int64_t>(prompts[0].size()), train_prompts);
  EXPECT_EQ(static_cast<int64_t>(prompts[1].size()), eval_prompts);
  for (const auto& p : prompts[1])
    EXPECT_EQ(prompts[0].count(p), 0u) << "prompt in both splits: " << p;
  int64_t expected = 0;
  for (int i = 0; i < 10; ++i) expected += expected_groups_for(i);
  EXPECT_EQ(groups, expected);
}

std::map<std::string, std::string> tree_bytes(const std::string& root) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file())
      files[fs::relative(e.path(), root).string()] = read_bytes(e.path().string());
  }
  return files;
}

TEST_F(BuilderTest, SameSeedSameBytesOtherSeedDiffers) {
  build_pretrain_dataset(options);
  options.output = dir.file("again");
  build_pretrain_dataset(options);
  const auto a = tree_bytes(dir.file("out")), b = tree_bytes(dir.file("again"));
  EXPECT_EQ(a, b);
  options.output = dir.file("other");
  options.seed = 1;
  build_pretrain_dataset(options);
  const auto c = tree_bytes(dir.file("other"));
  ASSERT_TRUE(c.count("train/shard-00000.bin"));
  EXPECT_NE(a.at("train/shard-00000.bin"), c.at("train/shard-00000.bin"));
}

TEST_F(BuilderTest, NothingLeftBehindOnErrorAndOverwriteRules) {
  write_text(dir.file("bad.jsonl"), trajectories_jsonl() + "{\"prompt\": \"x\"}\n");
  options.trajectories = {dir.file("bad.jsonl")};
  try {
    build_pretrain_dataset(options);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:87: missing field"), std::string::npos)
        << e.what();
  }
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename().string().find("out"), std::string::npos)
        << "left behind: " << e.path();
  }
  options.skip_invalid = true;  // the same input builds when bad lines are skipped
  const json m = build_pretrain_dataset(options);
  EXPECT_EQ(m["records"]["skipped_by_reason"]["missing_field"], 1);

  // An existing dataset needs --overwrite; a directory that is not a dataset is never replaced.
  options.negatives = 1;
  EXPECT_THROW(build_pretrain_dataset(options), Error);
  EXPECT_EQ(json::parse(read_bytes(options.output + "/manifest.json"))["settings"]["negatives"], 2);
  options.overwrite = true;
  build_pretrain_dataset(options);
  EXPECT_EQ(json::parse(read_bytes(options.output + "/manifest.json"))["settings"]["negatives"], 1);
  fs::create_directories(dir.file("precious"));
  write_text(dir.file("precious/notes.txt"), "keep");
  options.output = dir.file("precious");
  EXPECT_THROW(build_pretrain_dataset(options), Error);
  EXPECT_EQ(read_bytes(dir.file("precious/notes.txt")), "keep");

  // Too few policies for K everywhere: an error, not an empty dataset.
  options.output = dir.file("empty");
  options.negatives = 4;
  EXPECT_THROW(build_pretrain_dataset(options), Error);
  EXPECT_FALSE(fs::exists(dir.file("empty")));
}

TEST_F(BuilderTest, PreferenceGroupsAndTruncationCounts) {
  const Tokenizer& tok = polar_test::tiny_tokenizer();
  std::string jsonl;
  const std::vector<std::vector<std::string>> rows = {
      {"What is the capital of China?", "Beijing.", "Beijing.", "Shanghai."},
      {"Name a good model.", "the reward model", "a good model", "a bad model"},
      {"the the the the the the the the the the the the", "Beijing is the capital of China",
       "Beijing", "not Beijing"},
  };
  for (const auto& r : rows) {
    jsonl += json{{"prompt", {{{"role", "user"}, {"content", r[0]}}}},
                  {"reference", r[1]},
                  {"chosen", r[2]},
                  {"rejected", r[3]}}
                 .dump() +
             "\n";
  }
  write_text(dir.file("pref.jsonl"), jsonl);
  PreferenceBuildOptions p;
  p.input = dir.file("pref.jsonl");
  p.tokenizer = polar_test::tiny_tokenizer_dir();
  p.output = dir.file("pref");
  p.limits.max_response_length = 3;
  p.limits.max_length = 16;

  int64_t kept = 0, prompt_cut_groups = 0, prompt_cut = 0, response_cut = 0, dropped = 0;
  std::vector<EncodedGroup> expected;
  for (const auto& r : rows) {
    auto g = encode_group_text(tok, TemplateKind::Finetune, r[0], r[1], {r[2], r[3]}, p.limits);
    if (!g) {
      ++dropped;
      continue;
    }
    ++kept;
    prompt_cut_groups += g->prompt_tokens_cut > 0;
    prompt_cut += g->prompt_tokens_cut;
    response_cut += g->response_tokens_cut;
    expected.push_back(*g);
  }
  ASSERT_GT(prompt_cut_groups, 0);  // the limits above do exercise truncation
  ASSERT_GT(response_cut, 0);

  const json m = build_preference_dataset(p);
  EXPECT_EQ(m["kind"], "preference");
  EXPECT_EQ(m["truncation"]["groups_prompt_cut"], prompt_cut_groups);
  EXPECT_EQ(m["truncation"]["prompt_tokens_cut"], prompt_cut);
  EXPECT_EQ(m["truncation"]["response_tokens_cut"], response_cut);
  EXPECT_EQ(m["truncation"]["groups_dropped_too_long"], dropped);
  EXPECT_EQ(m["splits"]["train"]["groups"], kept);
  EXPECT_EQ(m["splits"]["eval"]["groups"], 0);
  const GroupDataset train = GroupDataset::open(p.output + "/train");
  EXPECT_EQ(train.template_kind(), TemplateKind::Finetune);
  EXPECT_EQ(GroupDataset::open(p.output + "/eval").size(), 0);
  // Records come out in input order when nothing is held out.
  ASSERT_EQ(train.size(), kept);
  for (int64_t i = 0; i < train.size(); ++i) {
    const GroupRef g = train.group(i);
    EXPECT_EQ(std::vector<int32_t>(g.prefix.data, g.prefix.data + g.prefix.size),
              expected[i].prefix);
    ASSERT_EQ(g.candidates.size(), 2u);
    EXPECT_EQ(
        std::vector<int32_t>(g.candidates[1].data, g.candidates[1].data + g.candidates[1].size),
        expected[i].candidates[1]);
    EXPECT_LE(g.longest_sequence(), 16);
  }
}

int run(const std::string& command) {
  const int status = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(BuilderTest, Command) {
  const std::string polar = std::string(POLAR_BINARY_DIR) + "/polar";
  if (!fs::exists(polar)) GTEST_SKIP() << "polar binary not built";
  const std::string base = polar + " data pretrain --trajectories " + dir.file("traj.jsonl") +
                           " --tokenizer " + polar_test::tiny_tokenizer_dir() + " --output " +
                           dir.file("cli");
  EXPECT_EQ(run(base + " --negatives 2 --seed 3 --eval-fraction 0.2"), 0);
  const json m = json::parse(read_bytes(dir.file("cli/manifest.json")));
  EXPECT_EQ(m["settings"]["seed"], 3);
  EXPECT_EQ(m["prompts"]["eval"].get<int64_t>() + m["prompts"]["train"].get<int64_t>(), 10);
  EXPECT_EQ(run(base), 1);  // exists without --overwrite: a polar::Error, exit 1
}

}  // namespace
}  // namespace polar
