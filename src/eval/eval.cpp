#include "polar/eval/eval.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <map>

#include "polar/common/error.h"
#include "polar/data/batch.h"
#include "polar/runtime/micro_batches.h"

namespace polar {

using nlohmann::json;

namespace {

GroupRef as_ref(const EncodedGroup& g) {
  GroupRef r;
  r.prefix = {g.prefix.data(), static_cast<int64_t>(g.prefix.size())};
  for (const auto& c : g.candidates)
    r.candidates.push_back({c.data(), static_cast<int64_t>(c.size())});
  return r;
}

// 95% Wilson score interval for a binomial proportion.
std::pair<double, double> wilson(int64_t k, int64_t n) {
  if (n == 0) return {0.0, 0.0};
  const double z = 1.959963984540054;
  double p = static_cast<double>(k) / static_cast<double>(n), nn = static_cast<double>(n);
  double denom = 1 + z * z / nn;
  double center = (p + z * z / (2 * nn)) / denom;
  double half = z * std::sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / denom;
  return {center - half, center + half};
}

// A NaN or infinite reward is never a score: the weights or the precision overflowed.
void check_finite_reward(float reward, int64_t line) {
  POLAR_CHECK(std::isfinite(reward), "line ", line, ": the model gave a non-finite reward (",
              reward, "); its weights or --precision overflow, so no result is written");
}

}  // namespace

std::vector<float> reward_groups(LoadedModel& lm, const std::vector<EncodedGroup>& groups,
                                 const ScoreOptions& o) {
  std::vector<GroupRef> refs;
  refs.reserve(groups.size());
  for (const auto& g : groups) refs.push_back(as_ref(g));
  torch::NoGradGuard no_grad;
  lm.model->eval();
  MicroBatchOptions options;
  options.pack = PackOptions{o.row_tokens, lm.tokenizer.special().pad, o.shared_prefix};
  options.token_budget = o.micro_batch_tokens;
  options.precision = o.precision;
  std::vector<float> out;
  for_each_micro_batch(lm.model, refs, options, [&](const MicroBatch& mb) {
    const torch::Tensor r = mb.rewards.cpu().contiguous();  // (N)
    out.insert(out.end(), r.data_ptr<float>(), r.data_ptr<float>() + r.numel());
  });
  return out;
}

json AccuracyCounts::to_json() const {
  auto [lo, hi] = wilson(correct, n);
  return json{{"n", n},
              {"correct", correct},
              {"ties", ties},
              {"accuracy", accuracy()},
              {"accuracy_ci95", {lo, hi}},
              {"mean_margin", mean_margin()}};
}

json PreferenceEval::to_json() const {
  json j = overall.to_json();
  j["per_category"] = json::object();
  for (const auto& [name, c] : per_category) j["per_category"][name] = c.to_json();
  j["dropped_too_long"] = dropped_too_long;
  return j;
}

std::string PreferenceEval::table() const {
  std::string t = fmt::format("{:<20} {:>7} {:>9} {:>17} {:>6} {:>12}\n", "category", "n",
                              "accuracy", "95% CI", "ties", "mean margin");
  auto row = [&](const std::string& name, const AccuracyCounts& c) {
    auto [lo, hi] = wilson(c.correct, c.n);
    t += fmt::format("{:<20} {:>7} {:>9.4f} {:>8.3f}-{:<8.3f} {:>6} {:>12.4f}\n", name, c.n,
                     c.accuracy(), lo, hi, c.ties, c.mean_margin());
  };
  for (const auto& [name, c] : per_category) row(name, c);
  row("overall", overall);
  if (dropped_too_long)
    t += fmt::format("({} records dropped: too long for max_length)\n", dropped_too_long);
  return t;
}

PreferenceEval evaluate_preferences(LoadedModel& lm, const std::vector<PreferenceRecord>& records,
                                    const ScoreOptions& o) {
  PreferenceEval ev;
  std::vector<EncodedGroup> groups;
  std::vector<const PreferenceRecord*> kept;
  for (const auto& r : records) {
    auto g = encode_group_text(lm.tokenizer, o.template_kind, r.prompt, r.reference,
                               {r.chosen, r.rejected}, o.limits);
    if (!g) {
      ev.dropped_too_long++;
      continue;
    }
    groups.push_back(std::move(*g));
    kept.push_back(&r);
  }
  std::vector<float> rewards = reward_groups(lm, groups, o);
  for (size_t i = 0; i < kept.size(); ++i) {
    float chosen = rewards[2 * i], rejected = rewards[2 * i + 1];
    check_finite_reward(chosen, kept[i]->line);
    check_finite_reward(rejected, kept[i]->line);
    std::string cat = kept[i]->category.empty() ? "default" : kept[i]->category;
    for (AccuracyCounts* c : {&ev.overall, &ev.per_category[cat]}) {
      c->n++;
      c->correct += chosen > rejected;
      c->ties += chosen == rejected;
      c->margin_sum += static_cast<double>(chosen) - static_cast<double>(rejected);
    }
  }
  return ev;
}

std::vector<double> score_records(LoadedModel& lm, const std::vector<ScoringRecord>& records,
                                  const ScoreOptions& o) {
  std::vector<EncodedGroup> groups;
  std::vector<std::pair<int64_t, int64_t>> slot(records.size(), {-1, -1});  // (group, candidate)
  std::map<std::vector<int32_t>, size_t> open_group;  // prefix -> the group taking more outputs
  std::vector<int64_t> group_tokens;
  for (size_t i = 0; i < records.size(); ++i) {
    auto g = encode_group_text(lm.tokenizer, o.template_kind, records[i].prompt,
                               records[i].reference, {records[i].output}, o.limits);
    if (!g) continue;
    const auto output_tokens = static_cast<int64_t>(g->candidates[0].size());
    if (o.shared_prefix) {
      // Outputs of one prompt + reference join its group while the group fits a row.
      auto it = open_group.find(g->prefix);
      if (it != open_group.end() && group_tokens[it->second] + output_tokens <= o.row_tokens) {
        EncodedGroup& target = groups[it->second];
        slot[i] = {static_cast<int64_t>(it->second),
                   static_cast<int64_t>(target.candidates.size())};
        target.candidates.push_back(std::move(g->candidates[0]));
        group_tokens[it->second] += output_tokens;
        continue;
      }
      open_group[g->prefix] = groups.size();
    }
    slot[i] = {static_cast<int64_t>(groups.size()), 0};
    group_tokens.push_back(static_cast<int64_t>(g->prefix.size()) + output_tokens);
    groups.push_back(std::move(*g));
  }
  std::vector<float> rewards = reward_groups(lm, groups, o);  // group by group, output by output
  std::vector<int64_t> first(groups.size() + 1, 0);
  for (size_t g = 0; g < groups.size(); ++g)
    first[g + 1] = first[g] + static_cast<int64_t>(groups[g].candidates.size());
  std::vector<double> out(records.size(), std::numeric_limits<double>::quiet_NaN());
  for (size_t i = 0; i < records.size(); ++i)
    if (slot[i].first >= 0) {
      const auto r = rewards[static_cast<size_t>(first[slot[i].first] + slot[i].second)];
      check_finite_reward(r, records[i].line);
      out[i] = r;
    }
  return out;
}

}  // namespace polar
