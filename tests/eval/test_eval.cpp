// Eval and scoring: per-category accuracy, the label-swap sanity check (swapping chosen and
// rejected must give 1 - accuracy when there are no ties), and one reward per scoring line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/tiny_data.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/eval/eval.h"

using polar::testing::TempDir;

namespace {

std::string write_random_checkpoint(const TempDir& tmp) {
  polar::ModelConfig shape;
  shape.vocab_size = 320;
  shape.hidden_size = 32;
  shape.num_layers = 2;
  shape.num_heads = 4;
  shape.num_kv_heads = 2;
  shape.intermediate_size = 64;
  polar::RewardModel model(shape);
  model->reset_parameters(5);
  auto tok = polar::Tokenizer::load(polar::testing::tiny_tokenizer_dir());
  nlohmann::json config{{"model", shape.to_json()}};
  std::string dir = tmp / "ckpt";
  polar::save_checkpoint(dir, {&model, &tok, &config, nullptr, nullptr, {}});
  return dir;
}

}  // namespace

TEST(Eval, LabelSwapGivesOneMinusAccuracyAndPerCategoryCounts) {
  TempDir tmp;
  auto lm = polar::load_model(write_random_checkpoint(tmp), torch::kCPU);
  std::vector<polar::PreferenceRecord> recs, swapped;
  const char* words[] = {"the sea",    "a tree",     "many numbers",
                         "what is 12", "yes and no", "reward model"};
  for (int i = 0; i < 40; ++i) {
    polar::PreferenceRecord r;
    r.prompt = std::string("how many ") + words[i % 6];
    r.reference = words[(i + 1) % 6];
    r.chosen = std::string(words[(i + 2) % 6]) + " " + std::to_string(i);
    r.rejected = std::string(words[(i + 3) % 6]) + " " + std::to_string(i * 7);
    r.category = i % 3 == 0 ? "math" : "chat";
    recs.push_back(r);
    std::swap(r.chosen, r.rejected);
    swapped.push_back(r);
  }
  polar::ScoreOptions o;
  auto a = polar::evaluate_preferences(lm, recs, o);
  auto b = polar::evaluate_preferences(lm, swapped, o);
  ASSERT_EQ(a.overall.n, 40);
  EXPECT_EQ(a.per_category.at("math").n, 14);
  EXPECT_EQ(a.per_category.at("chat").n, 26);
  EXPECT_EQ(a.overall.correct + b.overall.correct + a.overall.ties, 40);
  EXPECT_NEAR(a.overall.mean_margin(), -b.overall.mean_margin(), 1e-5);
  auto j = a.to_json();
  EXPECT_TRUE(j.contains("accuracy") && j.contains("n") && j.contains("per_category"));
  EXPECT_NE(a.table().find("overall"), std::string::npos);
}

TEST(Eval, ScoreGivesOneRewardPerRecordMatchingThePreferencePath) {
  TempDir tmp;
  auto lm = polar::load_model(write_random_checkpoint(tmp), torch::kCPU);
  std::vector<polar::ScoringRecord> recs;
  for (int i = 0; i < 5; ++i)
    recs.push_back(
        {"what is " + std::to_string(i), "the sea", "a tree " + std::to_string(i), i + 1});
  polar::ScoreOptions o;
  auto r = polar::score_records(lm, recs, o);
  ASSERT_EQ(r.size(), 5u);
  // Scoring one at a time gives the same rewards as scoring the batch (packing invariance).
  for (int i = 0; i < 5; ++i) {
    auto one = polar::score_records(lm, {recs[static_cast<size_t>(i)]}, o);
    EXPECT_NEAR(one[0], r[static_cast<size_t>(i)], 1e-5);
  }
  polar::PreferenceRecord p{
      recs[0].prompt, recs[0].reference, recs[0].output, recs[1].output, "", 1};
  auto ev = polar::evaluate_preferences(lm, {p}, o);
  EXPECT_NEAR(ev.overall.mean_margin(),
              r[0] - polar::score_records(
                         lm, {{recs[0].prompt, recs[0].reference, recs[1].output, 1}}, o)[0],
              1e-5);
}

TEST(Eval, ScoreSharesThePrefixOfOutputsWithTheSamePromptAndReference) {
  TempDir tmp;
  auto lm = polar::load_model(write_random_checkpoint(tmp), torch::kCPU);
  std::vector<polar::ScoringRecord> recs;  // 3 prompts, interleaved, 4 outputs each, mixed lengths
  for (int i = 0; i < 12; ++i) {
    std::string output = "a tree";
    for (int w = 0; w < i % 5; ++w) output += " and the sea " + std::to_string(i);
    recs.push_back(
        {"what is " + std::to_string(i % 3), "the sea " + std::to_string(i % 3), output, i + 1});
  }
  polar::ScoreOptions separate;
  separate.shared_prefix = false;
  const auto expected = polar::score_records(lm, recs, separate);
  for (int64_t row_tokens : {512, 40}) {  // 40: a prompt's outputs split over several groups
    polar::ScoreOptions shared;
    shared.row_tokens = row_tokens;
    const auto got = polar::score_records(lm, recs, shared);
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], expected[i], 1e-5) << "record " << i;  // fp32
  }
  std::set<double> distinct(expected.begin(), expected.end());
  EXPECT_GT(distinct.size(), 6u);  // outputs really score differently
}

TEST(Eval, PretrainTemplateScoresThePretrainSequence) {
  TempDir tmp;
  auto lm = polar::load_model(write_random_checkpoint(tmp), torch::kCPU);
  std::vector<polar::ScoringRecord> recs = {{"the sea is", " blue and", " wide", 1},
                                            {"count 12", " 13 14", " 15", 2}};
  polar::ScoreOptions finetune, pretrain;
  pretrain.template_kind = polar::TemplateKind::Pretrain;
  const auto a = polar::score_records(lm, recs, finetune);
  const auto b = polar::score_records(lm, recs, pretrain);
  for (size_t i = 0; i < recs.size(); ++i) {
    auto g = polar::encode_group_text(lm.tokenizer, polar::TemplateKind::Pretrain, recs[i].prompt,
                                      recs[i].reference, {recs[i].output}, polar::TemplateLimits{});
    ASSERT_TRUE(g.has_value());
    const auto want = polar::reward_groups(lm, {*g}, pretrain);
    EXPECT_NEAR(b[i], want[0], 1e-5);  // packed with the other record vs alone: float rounding
    EXPECT_GT(std::abs(a[i] - b[i]), 1e-6) << "the template made no difference";
  }
}
