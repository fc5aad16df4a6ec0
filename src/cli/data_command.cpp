// `polar data pretrain|preference`: build token shards from JSONL (see include/polar/data/builder.h).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "polar/cli/commands.h"
#include "polar/data/builder.h"

namespace polar::cli {

namespace {

void print_summary(const nlohmann::json& m, const std::string& output) {
  const auto& train = m["splits"]["train"];
  const auto& eval = m["splits"]["eval"];
  const auto& trunc = m["truncation"];
  fmt::print("wrote {}\n", output);
  fmt::print("  records   {} read, {} skipped {}\n", m["records"]["accepted"].get<int64_t>(),
             m["records"]["skipped"].get<int64_t>(), m["records"]["skipped_by_reason"].dump());
  fmt::print("  prompts   {} train, {} eval, {} skipped {}\n", m["prompts"]["train"].get<int64_t>(),
             m["prompts"]["eval"].get<int64_t>(), m["prompts"]["skipped"].get<int64_t>(),
             m["prompts"]["skipped_by_reason"].dump());
  fmt::print("  groups    {} train, {} eval ({} sequences, {} pairs in train)\n", train["groups"].get<int64_t>(),
             eval["groups"].get<int64_t>(), train["sequences"].get<int64_t>(), train["pairs"].get<int64_t>());
  fmt::print("  tokens    {} train, {} eval (stored once per group prefix)\n", train["stored_tokens"].get<int64_t>(),
             eval["stored_tokens"].get<int64_t>());
  fmt::print("  truncated {} groups prompt-cut ({} tokens per copy), {} response-cut ({} tokens), {} dropped as too long\n",
             trunc["groups_prompt_cut"].get<int64_t>(), trunc["prompt_tokens_cut"].get<int64_t>(),
             trunc["groups_response_cut"].get<int64_t>(), trunc["response_tokens_cut"].get<int64_t>(),
             trunc["groups_dropped_too_long"].get<int64_t>());
}

void add_limit_options(CLI::App* cmd, TemplateLimits& limits) {
  cmd->add_option("--max-length", limits.max_length, "Tokens per full sequence")->capture_default_str();
  cmd->add_option("--max-response-length", limits.max_response_length,
                  "Tokens per reference/candidate (cut on the right)")
      ->capture_default_str();
}

}  // namespace

void add_data_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("data", "Build POLAR token shards from JSONL");
  cmd->require_subcommand(1);

  auto pre = std::make_shared<PretrainBuildOptions>();
  auto template_name = std::make_shared<std::string>("pretrain");
  auto* p = cmd->add_subcommand("pretrain", "Policy-discrimination groups from trajectories of many policies");
  p->add_option("--trajectories", pre->trajectories, "JSONL files of {prompt, policy, response[, category]}")
      ->required()
      ->check(CLI::ExistingFile);
  p->add_option("--tokenizer", pre->tokenizer, "Tokenizer directory or .model file")->required();
  p->add_option("--output", pre->output, "Dataset directory to create")->required();
  p->add_option("--negatives", pre->negatives, "Negatives per group (K), from K distinct other policies")
      ->capture_default_str();
  p->add_option("--seed", pre->seed, "Seed for pairing, negatives and the eval split")->capture_default_str();
  add_limit_options(p, pre->limits);
  p->add_option("--eval-fraction", pre->eval_fraction, "Share of prompts held out for eval")->capture_default_str();
  p->add_option("--template", *template_name, "pretrain (prompt joined to responses) or finetune (\"\\n\" between)")
      ->check(CLI::IsMember({"pretrain", "finetune"}))
      ->capture_default_str();
  p->add_option("--groups-per-prompt", pre->groups_per_prompt, "Cap on groups per prompt (0 = as many as possible)")
      ->capture_default_str();
  p->add_flag("--skip-invalid", pre->skip_invalid, "Skip and count bad lines instead of failing");
  p->add_flag("--overwrite", pre->overwrite, "Replace an existing dataset at --output");
  p->callback([pre, template_name] {
    pre->template_kind = parse_template_kind(*template_name);
    print_summary(build_pretrain_dataset(*pre), pre->output);
  });

  auto pref = std::make_shared<PreferenceBuildOptions>();
  auto* f = cmd->add_subcommand("preference", "Fine-tuning groups from {prompt, reference, chosen, rejected}");
  f->add_option("--input", pref->input, "JSONL of {prompt, reference, chosen, rejected[, category]}")
      ->required()
      ->check(CLI::ExistingFile);
  f->add_option("--tokenizer", pref->tokenizer, "Tokenizer directory or .model file")->required();
  f->add_option("--output", pref->output, "Dataset directory to create")->required();
  add_limit_options(f, pref->limits);
  f->add_option("--eval-fraction", pref->eval_fraction, "Share of prompts held out for eval")->capture_default_str();
  f->add_option("--seed", pref->seed, "Seed for the eval split")->capture_default_str();
  f->add_flag("--skip-invalid", pref->skip_invalid, "Skip and count bad lines instead of failing");
  f->add_flag("--overwrite", pref->overwrite, "Replace an existing dataset at --output");
  f->callback([pref] { print_summary(build_preference_dataset(*pref), pref->output); });
}

}  // namespace polar::cli
