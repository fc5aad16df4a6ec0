// --negatives-from: which policy each negative comes from (any, same-family, mixed:P, nearest),
// the policy table it reads, its counts in the plan and the manifest, and its refusals.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "../tokenizer/tiny_tokenizer.h"
#include "polar/common/error.h"
#include "polar/data/builder.h"

namespace polar {
namespace {

using nlohmann::json;
using polar_test::TempDir;
using polar_test::write_text;

// Two families of three checkpoints (steps 1, 2, 3) and one policy without a family; every policy
// answers every prompt twice.
const char* kFamilies[] = {"a", "a", "a", "b", "b", "b", ""};
constexpr int kPolicies = 7;

std::string policy_name(int k) { return "p" + std::to_string(k); }

PolicyTable table() {
  PolicyTable t;
  for (int k = 0; k < kPolicies; ++k) {
    PolicyInfo info;
    info.family = kFamilies[k];
    if (k < 6) {
      info.step = k % 3 + 1;
      info.has_step = true;
    }
    t[policy_name(k)] = info;
  }
  return t;
}

std::vector<TrajectoryRecord> records(int prompts) {
  std::vector<TrajectoryRecord> out;
  for (int i = 0; i < prompts; ++i) {
    for (int k = 0; k < kPolicies; ++k) {
      for (int j = 0; j < 2; ++j) {
        TrajectoryRecord r;
        r.prompt = "q" + std::to_string(i);
        r.policy = policy_name(k);
        r.response = policy_name(k) + " answers " + std::to_string(i) + "/" + std::to_string(j);
        r.category = "c";
        out.push_back(r);
      }
    }
  }
  return out;
}

struct Outcome {
  GroupPlan plan;
  std::vector<std::string> recs_policy;  // policy of each record
};

Outcome plan_with(const std::string& from, int64_t negatives, const PolicyTable* t,
                  int prompts = 40) {
  const auto recs = records(prompts);
  PairingOptions o;
  o.negatives = negatives;
  o.seed = 11;
  o.negatives_from = parse_negative_selection(from);
  o.policies = t;
  Outcome out{plan_pretrain_groups(recs, o), {}};
  for (const auto& r : recs) out.recs_policy.push_back(r.policy);
  return out;
}

int family_of(const std::string& policy) { return std::stoi(policy.substr(1)); }

TEST(NegativesFrom, ParsesEveryChoiceAndRefusesTheRest) {
  EXPECT_EQ(parse_negative_selection("any").source, NegativeSource::Any);
  EXPECT_EQ(parse_negative_selection("same-family").source, NegativeSource::SameFamily);
  EXPECT_EQ(parse_negative_selection("nearest").source, NegativeSource::Nearest);
  const auto mixed = parse_negative_selection("mixed:0.25");
  EXPECT_EQ(mixed.source, NegativeSource::Mixed);
  EXPECT_DOUBLE_EQ(mixed.same_family_probability, 0.25);
  EXPECT_EQ(negative_selection_name(mixed), "mixed:0.25");
  for (const char* bad : {"mixed:", "mixed:1.5", "mixed:-0.1", "mixed:x", "family", ""}) {
    EXPECT_THROW(parse_negative_selection(bad), Error) << bad;
  }
}

TEST(NegativesFrom, AnyWithATableDrawsTheSameGroupsAsWithout) {
  const PolicyTable t = table();
  const Outcome with = plan_with("any", 2, &t);
  const Outcome without = plan_with("any", 2, nullptr);
  ASSERT_EQ(with.plan.groups.size(), without.plan.groups.size());
  for (size_t g = 0; g < with.plan.groups.size(); ++g) {
    EXPECT_EQ(with.plan.groups[g].reference, without.plan.groups[g].reference);
    EXPECT_EQ(with.plan.groups[g].candidates, without.plan.groups[g].candidates);
  }
  // Counted with a table: K = 2 negatives per group.
  const auto& c = with.plan.counts;
  EXPECT_EQ(c.negatives_same_family + c.negatives_other_family,
            2 * static_cast<int64_t>(with.plan.groups.size()));
  EXPECT_GT(c.negatives_other_family, c.negatives_same_family);  // 2 kin among 6 others
  EXPECT_EQ(c.negatives_fallback, 0);
}

TEST(NegativesFrom, SameFamilyTakesKinAndFallsBackOnlyWhenNoneIsLeft) {
  const PolicyTable t = table();
  for (int64_t k : {1, 2, 3}) {
    const Outcome o = plan_with("same-family", k, &t);
    ASSERT_FALSE(o.plan.groups.empty());
    int64_t kin = 0, fallback_expected = 0;
    for (const auto& g : o.plan.groups) {
      const std::string& ref = o.recs_policy[static_cast<size_t>(g.reference)];
      const std::string fam = kFamilies[family_of(ref)];
      std::set<std::string> seen;
      const int64_t kin_available = fam.empty() ? 0 : 2;
      for (size_t j = 1; j < g.candidates.size(); ++j) {
        const std::string& neg = o.recs_policy[static_cast<size_t>(g.candidates[j])];
        EXPECT_NE(neg, ref);
        EXPECT_TRUE(seen.insert(neg).second) << "negatives from distinct policies";
        const bool same = !fam.empty() && fam == kFamilies[family_of(neg)];
        if (static_cast<int64_t>(j) <= kin_available) EXPECT_TRUE(same) << ref << " vs " << neg;
        kin += same;
      }
      fallback_expected += std::max<int64_t>(0, k - kin_available);
    }
    EXPECT_EQ(o.plan.counts.negatives_same_family, kin);
    EXPECT_EQ(o.plan.counts.negatives_fallback, fallback_expected) << "K=" << k;
  }
}

TEST(NegativesFrom, NearestTakesTheNeighbourByStep) {
  const PolicyTable t = table();
  const Outcome o = plan_with("nearest", 1, &t);
  int64_t checked = 0;
  for (const auto& g : o.plan.groups) {
    const int ref = family_of(o.recs_policy[static_cast<size_t>(g.reference)]);
    const int neg = family_of(o.recs_policy[static_cast<size_t>(g.candidates[1])]);
    if (ref == 6) continue;  // no family: drawn from any
    EXPECT_EQ(ref / 3, neg / 3) << "same family";
    EXPECT_EQ(std::abs(ref % 3 - neg % 3), 1) << "p" << ref << " -> p" << neg;
    ++checked;
  }
  EXPECT_GT(checked, 20);
}

TEST(NegativesFrom, MixedFollowsItsProbability) {
  const PolicyTable t = table();
  const Outcome none = plan_with("mixed:0", 1, &t, 200);
  const Outcome all = plan_with("mixed:1", 1, &t, 200);
  const Outcome half = plan_with("mixed:0.5", 1, &t, 200);
  auto kin_share = [](const Outcome& o) {
    const auto& c = o.plan.counts;
    return static_cast<double>(c.negatives_same_family) /
           static_cast<double>(c.negatives_same_family + c.negatives_other_family);
  };
  // Any: 2 kin among 6 others (1/3) for family policies; 0 for the family-less one.
  EXPECT_LT(kin_share(none), 0.4);
  EXPECT_GT(kin_share(all), 0.8);  // every family reference (6 of 7) gets kin
  EXPECT_GT(kin_share(half), kin_share(none) + 0.1);
  EXPECT_LT(kin_share(half), kin_share(all) - 0.1);
}

TEST(NegativesFrom, RefusesMissingTableAndUnknownPolicy) {
  EXPECT_THROW(plan_with("same-family", 1, nullptr), Error);
  PolicyTable partial = table();
  partial.erase("p3");
  try {
    plan_with("any", 1, &partial);
    FAIL() << "a policy missing from the table was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"p3\""), std::string::npos) << e.what();
  }
}

TEST(NegativesFrom, ReadsPolicyTablesAndNamesBadEntries) {
  TempDir dir;
  write_text(dir.file("list.json"),
             R"([{"name": "x", "family": "f", "step": 3, "skill": 0.5}, {"name": "y"}])");
  const PolicyTable list = read_policy_table(dir.file("list.json"));
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list.at("x").family, "f");
  EXPECT_TRUE(list.at("x").has_step);
  EXPECT_EQ(list.at("x").step, 3);
  EXPECT_FALSE(list.at("y").has_step);
  write_text(dir.file("pool.json"),
             R"({"sampling": {}, "policies": [{"name": "z", "family": "g"}]})");
  EXPECT_EQ(read_policy_table(dir.file("pool.json")).at("z").family, "g");
  const std::map<std::string, std::string> bad = {
      {R"([{"name": "x"}, {"name": "x"}])", "policies[1]"},
      {R"([{"family": "f"}])", "policies[0]"},
      {R"([{"name": "x", "step": "three"}])", "policies[0].step"},
      {R"({"other": []})", "\"policies\""},
      {R"([{"name": "x", "family": 3}])", "policies[0].family"}};
  for (const auto& [text, where] : bad) {
    write_text(dir.file("bad.json"), text);
    try {
      read_policy_table(dir.file("bad.json"));
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(where), std::string::npos) << e.what();
    }
  }
}

TEST(NegativesFrom, ManifestCountsAndSettings) {
  TempDir dir;
  std::string lines;
  for (const auto& r : records(12)) {
    lines += json{{"prompt", r.prompt},
                  {"policy", r.policy},
                  {"response", r.response},
                  {"category", r.category}}
                 .dump() +
             "\n";
  }
  write_text(dir.file("traj.jsonl"), lines);
  json pool = json::array();
  for (const auto& [name, info] : table()) {
    json e = {{"name", name}, {"family", info.family}};
    if (info.has_step) e["step"] = info.step;
    pool.push_back(e);
  }
  write_text(dir.file("policies.json"), pool.dump());
  PretrainBuildOptions o;
  o.trajectories = {dir.file("traj.jsonl")};
  o.tokenizer = polar_test::tiny_tokenizer_dir();
  o.output = dir.file("out");
  o.negatives = 2;
  o.negatives_from = parse_negative_selection("same-family");
  o.policies = dir.file("policies.json");
  o.progress = false;
  const json m = build_pretrain_dataset(o);
  EXPECT_EQ(m["settings"]["negatives_from"], "same-family");
  const auto& n = m["negatives"];
  EXPECT_EQ(n["same_family"].get<int64_t>() + n["other_family"].get<int64_t>(),
            2 * m["planned_groups"].get<int64_t>());
  EXPECT_GT(n["same_family"].get<int64_t>(), n["other_family"].get<int64_t>());

  o.policies.clear();
  o.output = dir.file("out2");
  EXPECT_THROW(build_pretrain_dataset(o), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.file("out2")));
}

}  // namespace
}  // namespace polar
