// `polar eval` (preference accuracy, per category) and `polar score` (one reward per line).
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <cmath>
#include <iostream>

#include "polar/cli/commands.h"
#include "polar/common/activity.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/eval/eval.h"
#include "polar/eval/reward_stats.h"
#include "polar/runtime/device.h"

namespace polar::cli {

namespace {

struct CommonArgs {
  std::string checkpoint, input, output, device = "auto", precision = "fp32",
                                         template_kind = "finetune";
  int64_t max_length = 16384, max_response_length = 4096, batch_tokens = 16384, row_tokens = 512;
  bool skip_invalid = false, no_verify = false;
  bool shared_prefix = true;
  bool save_stats = false, normalize = false;
};

void add_common(CLI::App* cmd, CommonArgs& a) {
  cmd->add_option("--checkpoint", a.checkpoint, "checkpoint directory (e.g. runs/x/final)")
      ->required();
  cmd->add_option("--output", a.output, "write results here (JSON / JSONL)");
  cmd->add_option("--device", a.device, "auto | cpu | cuda[:N]");
  cmd->add_option("--precision", a.precision, "fp32 | bf16 (CUDA)");
  const int64_t kMaxTokens = int64_t{1} << 24;
  cmd->add_option("--max-length", a.max_length, "tokens per sequence")
      ->check(CLI::Range(int64_t{3}, kMaxTokens));
  cmd->add_option("--max-response-length", a.max_response_length, "tokens per reference/candidate")
      ->check(CLI::Range(int64_t{1}, kMaxTokens));
  cmd->add_option("--batch-tokens", a.batch_tokens, "tokens per forward pass")
      ->check(CLI::Range(int64_t{1}, kMaxTokens));
  cmd->add_option(
         "--row-tokens", a.row_tokens,
         "packed row length (attention is computed per row; a longer sequence gets its own row)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  cmd->add_option("--template", a.template_kind,
                  "finetune (prompt \"\\n\" response) | pretrain (prompt and response joined, as "
                  "in pre-training data)")
      ->check(CLI::IsMember({"finetune", "pretrain"}))
      ->capture_default_str();
  cmd->add_flag("--skip-invalid", a.skip_invalid, "skip invalid input lines instead of stopping");
  cmd->add_flag("--no-verify", a.no_verify,
                "skip the checkpoint's checksum and finite-weights checks (very large models)");
  cmd->add_option(
      "--shared-prefix", a.shared_prefix,
      "encode a prompt + reference once for all its outputs (true | false; same rewards)");
}

// Runs `fn` with errors prefixed by the input file and the checkpoint ("data.jsonl scored by
// runs/x/final: line 3: ..."), and with that as the activity for LibTorch's own errors.
template <typename Fn>
void with_context(const CommonArgs& a, Fn fn) {
  const std::string where = a.input + " scored by " + a.checkpoint;
  Activity activity("scoring " + where);
  try {
    fn();
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
}

ScoreOptions score_options(const CommonArgs& a) {
  ScoreOptions o;
  o.limits.max_length = a.max_length;
  o.limits.max_response_length = a.max_response_length;
  o.micro_batch_tokens = a.batch_tokens;
  o.row_tokens = a.row_tokens;
  o.precision = parse_enum<Precision>(a.precision, "--precision");
  o.shared_prefix = a.shared_prefix;
  o.template_kind = parse_template_kind(a.template_kind);
  return o;
}

// `polar eval --save-stats`: every chosen and rejected response of the split scored as
// `polar score` scores them; their mean and std saved beside the checkpoint.
void save_stats(LoadedModel& lm, const std::vector<PreferenceRecord>& records,
                const CommonArgs& a) {
  std::vector<ScoringRecord> candidates;
  for (const auto& r : records) {
    candidates.push_back({r.prompt, r.reference, r.chosen, r.line});
    candidates.push_back({r.prompt, r.reference, r.rejected, r.line});
  }
  std::vector<double> rewards;
  with_context(a, [&] { rewards = score_records(lm, candidates, score_options(a)); });
  const RewardStats rs = compute_reward_stats(rewards, a.input);
  save_reward_stats(a.checkpoint, rs);
  std::cout << "reward mean " << rs.mean << ", std " << rs.std << " over " << rs.count
            << " responses, saved in " << a.checkpoint << "/reward_stats.json\n";
}

}  // namespace

void add_eval_commands(CLI::App& app) {
  auto ev = std::make_shared<CommonArgs>();
  auto* e =
      app.add_subcommand("eval", "preference accuracy of a checkpoint, overall and per category");
  add_common(e, *ev);
  e->add_option("--data", ev->input,
                "preference JSONL {prompt, reference, chosen, rejected[, category]}")
      ->required();
  e->add_flag("--save-stats", ev->save_stats,
              "store the mean and std of the rewards of every chosen and rejected response in "
              "CHECKPOINT/reward_stats.json (for `polar score|serve --normalize`)");
  e->callback([ev] {
    ReadStats stats;
    auto records = read_preferences(ev->input, ev->skip_invalid, &stats);
    auto lm = load_model(ev->checkpoint, resolve_device(ev->device, 0), !ev->no_verify);
    PreferenceEval result;
    with_context(*ev, [&] { result = evaluate_preferences(lm, records, score_options(*ev)); });
    std::cout << result.table();
    if (stats.skipped) std::cout << "(" << stats.skipped << " invalid lines skipped)\n";
    if (ev->save_stats) save_stats(lm, records, *ev);
    if (!ev->output.empty()) {
      auto j = result.to_json();
      j["checkpoint"] = ev->checkpoint;
      j["data"] = ev->input;
      j["template"] = ev->template_kind;
      j["invalid_lines_skipped"] = stats.skipped;
      write_json_file_atomic(ev->output, j);
    }
  });

  auto sc = std::make_shared<CommonArgs>();
  auto* s = app.add_subcommand("score",
                               "one reward per input line {prompt, reference, output}, as JSONL");
  add_common(s, *sc);
  s->add_option("--input", sc->input, "scoring JSONL")->required();
  s->add_flag(
      "--normalize", sc->normalize,
      "(reward - mean) / std with CHECKPOINT/reward_stats.json (`polar eval --save-stats`)");
  s->callback([sc] {
    ReadStats stats;
    auto records = read_scoring(sc->input, sc->skip_invalid, &stats);
    auto lm = load_model(sc->checkpoint, resolve_device(sc->device, 0), !sc->no_verify);
    std::vector<double> rewards;
    with_context(*sc, [&] { rewards = score_records(lm, records, score_options(*sc)); });
    if (sc->normalize) {
      const RewardStats rs = load_reward_stats(sc->checkpoint);
      for (double& r : rewards) r = rs.normalize(r);
    }
    std::string out;
    for (size_t i = 0; i < records.size(); ++i) {
      nlohmann::json j{{"line", records[i].line}};
      if (std::isnan(rewards[i])) {
        j["reward"] = nullptr;
        j["error"] = "too long for --max-length";
      } else {
        j["reward"] = rewards[i];
      }
      out += j.dump() + "\n";
    }
    if (sc->output.empty()) {
      std::cout << out;
    } else {
      write_file_atomic(sc->output, out);
      spdlog::info("wrote {} rewards to {}", records.size(), sc->output);
    }
  });
}

}  // namespace polar::cli
