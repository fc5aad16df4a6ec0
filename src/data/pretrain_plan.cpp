// Planning POLAR pre-training groups one prompt at a time (see builder.h): the canonical order of
// a prompt's trajectories, the two pairing schemes, and the prompt hash that orders, partitions
// and splits prompts.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "build_common.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/data/builder.h"

namespace polar {

using nlohmann::json;

namespace {

using data_build::shuffle;
using data_build::uniform_below;

constexpr uint64_t kEvalSalt =
    0xD1B54A32D192ED03ULL;  // the split and the pairing use separate streams

uint64_t mix64(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Policies of a canonically ordered prompt: [begin, end) index ranges, in policy order.
std::vector<std::pair<int64_t, int64_t>> policy_ranges(const std::vector<TrajectoryView>& t) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (int64_t i = 0; i < static_cast<int64_t>(t.size()); ++i) {
    if (ranges.empty() ||
        t[static_cast<size_t>(ranges.back().first)].policy != t[static_cast<size_t>(i)].policy) {
      ranges.emplace_back(i, i);
    }
    ranges.back().second = i + 1;
  }
  return ranges;
}

// (policy index, reference, positive) of every group of the prompt, by scheme.
struct Pairing {
  size_t policy;
  int64_t reference, positive;
};

std::vector<Pairing> all_pairs(const std::vector<std::pair<int64_t, int64_t>>& policies,
                               const std::vector<size_t>& eligible, int64_t cap,
                               std::mt19937_64& rng) {
  // Disjoint (reference, positive) pairs of each policy, after shuffling its trajectories.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> pairs(policies.size());
  for (size_t a : eligible) {
    std::vector<int64_t> t;
    for (int64_t i = policies[a].first; i < policies[a].second; ++i) t.push_back(i);
    shuffle(t, rng);
    for (size_t i = 0; i + 1 < t.size(); i += 2) pairs[a].emplace_back(t[i], t[i + 1]);
  }
  // All of them, or a cap taken round-robin over the policies in random order, so a capped prompt
  // still draws references from as many policies as it can.
  std::vector<Pairing> chosen;
  if (cap == 0) {
    for (size_t a : eligible) {
      for (const auto& [r, p] : pairs[a]) chosen.push_back({a, r, p});
    }
    return chosen;
  }
  std::vector<size_t> order = eligible;
  shuffle(order, rng);
  for (size_t round = 0; static_cast<int64_t>(chosen.size()) < cap; ++round) {
    bool any = false;
    for (size_t a : order) {
      if (round >= pairs[a].size() || static_cast<int64_t>(chosen.size()) >= cap) continue;
      chosen.push_back({a, pairs[a][round].first, pairs[a][round].second});
      any = true;
    }
    if (!any) break;
  }
  return chosen;
}

// POLAR's scheme: per pass, a policy uniformly among the eligible, two distinct trajectories of it.
std::vector<Pairing> paper_pairs(const std::vector<std::pair<int64_t, int64_t>>& policies,
                                 const std::vector<size_t>& eligible, int64_t passes,
                                 std::mt19937_64& rng) {
  std::vector<Pairing> chosen;
  for (int64_t pass = 0; pass < passes; ++pass) {
    const size_t a = eligible[uniform_below(rng, eligible.size())];
    const auto n = static_cast<uint64_t>(policies[a].second - policies[a].first);
    const uint64_t i = uniform_below(rng, n);
    const uint64_t j = (i + 1 + uniform_below(rng, n - 1)) % n;  // uniform among the others
    chosen.push_back({a, policies[a].first + static_cast<int64_t>(i),
                      policies[a].first + static_cast<int64_t>(j)});
  }
  return chosen;
}

// The table entry of each policy of a prompt (in policy order); empty without a table.
std::vector<const PolicyInfo*> policy_infos(const std::vector<TrajectoryView>& t,
                                            const std::vector<std::pair<int64_t, int64_t>>& ranges,
                                            const PairingOptions& o) {
  std::vector<const PolicyInfo*> info;
  if (o.policies == nullptr) {
    POLAR_CHECK(o.negatives_from.source == NegativeSource::Any, "--negatives-from ",
                negative_selection_name(o.negatives_from),
                " needs the policies' families: give --policies FILE");
    return info;
  }
  for (const auto& range : ranges) {
    const std::string_view name = t[static_cast<size_t>(range.first)].policy;
    const auto it = o.policies->find(name);
    POLAR_CHECK(it != o.policies->end(), "policy \"", name,
                "\" of the trajectories is not in the --policies table");
    info.push_back(&it->second);
  }
  return info;
}

bool same_family(const PolicyInfo& a, const PolicyInfo& b) {
  return !a.family.empty() && a.family == b.family;  // no family: a family of its own
}

// Position in [j, others.size()) of the j-th negative for reference policy `a`, by
// o.negatives_from; counts where it came from.
size_t pick_negative(const std::vector<const PolicyInfo*>& info, size_t a,
                     const std::vector<size_t>& others, size_t j, const PairingOptions& o,
                     std::mt19937_64& rng, PlanCounts& counts) {
  const PolicyInfo& ref = *info[a];
  const NegativeSelection& sel = o.negatives_from;
  bool want_kin = sel.source == NegativeSource::SameFamily || sel.source == NegativeSource::Nearest;
  if (sel.source == NegativeSource::Mixed) {
    want_kin = static_cast<double>(rng() >> 11) * 0x1.0p-53 < sel.same_family_probability;
  }
  size_t pick = others.size();
  if (want_kin) {
    std::vector<size_t> kin;  // positions of the remaining policies of A's family
    for (size_t i = j; i < others.size(); ++i) {
      if (same_family(*info[others[i]], ref)) kin.push_back(i);
    }
    if (sel.source == NegativeSource::Nearest && !kin.empty()) {
      auto distance = [&](size_t i) {
        const PolicyInfo& p = *info[others[i]];
        return p.has_step && ref.has_step ? std::abs(p.step - ref.step)
                                          : std::numeric_limits<double>::infinity();
      };
      double best = std::numeric_limits<double>::infinity();
      for (size_t i : kin) best = std::min(best, distance(i));
      std::vector<size_t> nearest;  // ties (and no steps at all) are drawn uniformly
      for (size_t i : kin) {
        if (distance(i) == best) nearest.push_back(i);
      }
      kin.swap(nearest);
    }
    if (!kin.empty()) {
      pick = kin[uniform_below(rng, kin.size())];
    } else {
      ++counts.negatives_fallback;
    }
  }
  if (pick == others.size()) pick = j + uniform_below(rng, others.size() - j);
  ++(same_family(*info[others[pick]], ref) ? counts.negatives_same_family
                                           : counts.negatives_other_family);
  return pick;
}

}  // namespace

NegativeSelection parse_negative_selection(const std::string& text) {
  NegativeSelection s;
  if (text == "any") return s;
  if (text == "same-family") {
    s.source = NegativeSource::SameFamily;
  } else if (text == "nearest") {
    s.source = NegativeSource::Nearest;
  } else if (text.rfind("mixed:", 0) == 0) {
    s.source = NegativeSource::Mixed;
    const std::string p = text.substr(6);
    size_t used = 0;
    try {
      s.same_family_probability = std::stod(p, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    POLAR_CHECK(used == p.size() && !p.empty() && s.same_family_probability >= 0 &&
                    s.same_family_probability <= 1,
                "--negatives-from mixed:P: P must be a number in [0, 1], got \"", p, "\"");
  } else {
    throw Error("--negatives-from: expected any, same-family, mixed:P or nearest, got \"" + text +
                "\"");
  }
  return s;
}

std::string negative_selection_name(const NegativeSelection& s) {
  switch (s.source) {
    case NegativeSource::SameFamily:
      return "same-family";
    case NegativeSource::Nearest:
      return "nearest";
    case NegativeSource::Mixed:
      return fmt::format("mixed:{}", s.same_family_probability);
    case NegativeSource::Any:
      break;
  }
  return "any";
}

PolicyTable read_policy_table(const std::string& path) {
  const json doc = read_json_file(path);
  const json* list = &doc;
  if (doc.is_object()) {
    POLAR_CHECK(doc.contains("policies"), path,
                ": expected a JSON array of policies or an object with \"policies\"");
    list = &doc["policies"];
  }
  POLAR_CHECK(list->is_array(), path, ": \"policies\" must be an array");
  PolicyTable table;
  for (size_t i = 0; i < list->size(); ++i) {
    const json& e = (*list)[i];
    const std::string where = fmt::format("{}: policies[{}]", path, i);
    POLAR_CHECK(e.is_object() && e.contains("name") && e["name"].is_string(), where,
                ": expected an object with a string \"name\"");
    PolicyInfo info;
    if (e.contains("family")) {
      POLAR_CHECK(e["family"].is_string(), where, ".family: expected a string");
      info.family = e["family"].get<std::string>();
    }
    if (e.contains("step")) {
      POLAR_CHECK(e["step"].is_number(), where, ".step: expected a number");
      info.step = e["step"].get<double>();
      info.has_step = true;
    }
    const auto name = e["name"].get<std::string>();
    POLAR_CHECK(table.emplace(name, info).second, where, ": policy \"", name, "\" listed twice");
  }
  return table;
}

PairingScheme parse_pairing_scheme(const std::string& name) {
  if (name == "all-pairs") return PairingScheme::AllPairs;
  if (name == "paper") return PairingScheme::Paper;
  throw Error("--pairing: expected \"all-pairs\" or \"paper\", got \"" + name + "\"");
}

const char* pairing_scheme_name(PairingScheme scheme) {
  return scheme == PairingScheme::Paper ? "paper" : "all-pairs";
}

void PlanCounts::add(const PlanCounts& other) {
  duplicates += other.duplicates;
  positive_equals_reference += other.positive_equals_reference;
  negative_equals_positive += other.negative_equals_positive;
  for (const auto& [reason, n] : other.skipped_prompts_by_reason)
    skipped_prompts_by_reason[reason] += n;
  negatives_same_family += other.negatives_same_family;
  negatives_other_family += other.negatives_other_family;
  negatives_fallback += other.negatives_fallback;
}

uint64_t prompt_hash(std::string_view prompt) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (unsigned char c : prompt) h = (h ^ c) * 0x100000001B3ULL;
  return mix64(h);
}

bool prompt_is_eval(uint64_t hash, double fraction, uint64_t seed) {
  const uint64_t x = mix64(hash ^ mix64(seed ^ kEvalSalt));
  return static_cast<double>(x >> 11) * 0x1.0p-53 < fraction;  // uniform in [0, 1)
}

void canonical_order(std::vector<TrajectoryView>& t, PlanCounts& counts) {
  auto key = [](const TrajectoryView& v) { return std::tie(v.policy, v.response, v.category); };
  std::sort(t.begin(), t.end(),
            [&](const TrajectoryView& a, const TrajectoryView& b) { return key(a) < key(b); });
  const auto end =
      std::unique(t.begin(), t.end(), [](const TrajectoryView& a, const TrajectoryView& b) {
        return a.policy == b.policy && a.response == b.response;
      });
  counts.duplicates += static_cast<int64_t>(t.end() - end);
  t.erase(end, t.end());
}

std::vector<PromptGroup> plan_prompt_groups(const std::vector<TrajectoryView>& t,
                                            const PairingOptions& o, uint64_t hash,
                                            PlanCounts& counts) {
  POLAR_CHECK(o.negatives >= 1, "--negatives must be >= 1, got ", o.negatives);
  POLAR_CHECK(o.groups_per_prompt >= 0, "--groups-per-prompt must be >= 0, got ",
              o.groups_per_prompt);
  POLAR_CHECK(o.passes >= 1, "--passes must be >= 1, got ", o.passes);
  const auto policies = policy_ranges(t);
  if (static_cast<int64_t>(policies.size()) < o.negatives + 1) {
    ++counts.skipped_prompts_by_reason["fewer_policies_than_negatives_plus_one"];
    return {};
  }
  std::vector<size_t> eligible;  // policies with two trajectories
  for (size_t a = 0; a < policies.size(); ++a) {
    if (policies[a].second - policies[a].first >= 2) eligible.push_back(a);
  }
  if (eligible.empty()) {
    ++counts.skipped_prompts_by_reason["no_policy_with_two_trajectories"];
    return {};
  }
  std::mt19937_64 rng(mix64(o.seed ^ hash));
  const std::vector<const PolicyInfo*> info = policy_infos(t, policies, o);
  const std::vector<Pairing> chosen = o.scheme == PairingScheme::Paper
                                          ? paper_pairs(policies, eligible, o.passes, rng)
                                          : all_pairs(policies, eligible, o.groups_per_prompt, rng);
  std::vector<PromptGroup> groups;
  std::vector<size_t> others;
  for (const Pairing& c : chosen) {
    PromptGroup g;
    g.reference = c.reference;
    g.candidates.push_back(c.positive);
    // K distinct policies other than A (partial Fisher-Yates), one random trajectory each.
    others.clear();
    for (size_t b = 0; b < policies.size(); ++b) {
      if (b != c.policy) others.push_back(b);
    }
    for (size_t j = 0; j < static_cast<size_t>(o.negatives); ++j) {
      const size_t pick = info.empty() ? j + uniform_below(rng, others.size() - j)
                                       : pick_negative(info, c.policy, others, j, o, rng, counts);
      std::swap(others[j], others[pick]);
      const auto& range = policies[others[j]];
      g.candidates.push_back(range.first +
                             static_cast<int64_t>(uniform_below(rng, range.second - range.first)));
    }
    const std::string_view positive = t[static_cast<size_t>(c.positive)].response;
    if (positive == t[static_cast<size_t>(c.reference)].response) {
      ++counts.positive_equals_reference;
      continue;
    }
    const bool negative_copies =
        std::any_of(g.candidates.begin() + 1, g.candidates.end(),
                    [&](int64_t k) { return t[static_cast<size_t>(k)].response == positive; });
    if (negative_copies) {
      ++counts.negative_equals_positive;
      continue;
    }
    groups.push_back(std::move(g));
  }
  if (groups.empty()) ++counts.skipped_prompts_by_reason["every_group_dropped_as_a_copy"];
  return groups;
}

GroupPlan plan_pretrain_groups(const std::vector<TrajectoryRecord>& records,
                               const PairingOptions& o) {
  // (hash, prompt) -> record indices
  std::map<std::pair<uint64_t, std::string_view>, std::vector<int64_t>> by_prompt;
  for (size_t i = 0; i < records.size(); ++i) {
    by_prompt[{prompt_hash(records[i].prompt), records[i].prompt}].push_back(
        static_cast<int64_t>(i));
  }
  GroupPlan plan;
  for (const auto& [key, indices] : by_prompt) {
    const auto prompt_index = static_cast<int64_t>(plan.prompts.size());
    plan.prompts.emplace_back(key.second);
    std::vector<TrajectoryView> views;
    for (int64_t i : indices) {
      const auto& r = records[static_cast<size_t>(i)];
      views.push_back({r.policy, r.response, r.category});
    }
    canonical_order(views, plan.counts);
    // Views point into records, so a view's record index is recovered by address.
    auto record_of = [&](int64_t k) {
      const char* p = views[static_cast<size_t>(k)].response.data();
      for (int64_t i : indices) {
        if (records[static_cast<size_t>(i)].response.data() == p) return i;
      }
      throw Error("plan_pretrain_groups: lost a record");
    };
    for (const auto& g : plan_prompt_groups(views, o, key.first, plan.counts)) {
      PlannedGroup pg;
      pg.prompt = prompt_index;
      pg.reference = record_of(g.reference);
      for (int64_t k : g.candidates) pg.candidates.push_back(record_of(k));
      plan.groups.push_back(std::move(pg));
    }
  }
  return plan;
}

}  // namespace polar
