// Scoring and preference evaluation with a trained checkpoint.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "polar/checkpoint/checkpoint.h"
#include "polar/common/precision.h"
#include "polar/data/records.h"
#include "polar/tokenizer/template.h"

namespace polar {

struct ScoreOptions {
  TemplateLimits limits;
  TemplateKind template_kind =
      TemplateKind::Finetune;          // pretrain: prompt and response without "\n"
  int64_t row_tokens = 512;            // packed row length (a longer group gets a row of its own)
  int64_t micro_batch_tokens = 16384;  // computed tokens per forward pass
  Precision precision = Precision::Fp32;
  bool shared_prefix = true;  // prefix once per group; score_records groups outputs of one prefix
};

// Rewards of every sequence of `groups` (group by group, candidate by candidate), in float.
std::vector<float> reward_groups(LoadedModel& model, const std::vector<EncodedGroup>& groups,
                                 const ScoreOptions& options);

struct AccuracyCounts {
  int64_t n = 0, correct = 0, ties = 0;
  double margin_sum = 0;  // sum of r_chosen - r_rejected
  double accuracy() const {
    return n ? static_cast<double>(correct) / static_cast<double>(n) : 0.0;
  }
  double mean_margin() const { return n ? margin_sum / static_cast<double>(n) : 0.0; }
  nlohmann::json to_json() const;  // + 95% Wilson interval
};

struct PreferenceEval {
  AccuracyCounts overall;
  std::map<std::string, AccuracyCounts> per_category;
  int64_t dropped_too_long = 0;  // records that could not fit max_length even with no prompt
  nlohmann::json to_json() const;
  std::string table() const;
};

// Accuracy = chosen strictly above rejected; ties are counted and reported (as not correct).
PreferenceEval evaluate_preferences(LoadedModel& model,
                                    const std::vector<PreferenceRecord>& records,
                                    const ScoreOptions& options);

// One reward per record (NaN for a record that cannot fit max_length). With shared_prefix,
// records whose prompt and reference encode to the same prefix are scored as one group (in
// chunks of at most row_tokens tokens), so the prefix is computed once.
std::vector<double> score_records(LoadedModel& model, const std::vector<ScoringRecord>& records,
                                  const ScoreOptions& options);

}  // namespace polar
