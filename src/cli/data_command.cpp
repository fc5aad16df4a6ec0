// `polar data pretrain|merge|preference`: build token shards from JSONL (see
// include/polar/data/builder.h).
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cctype>
#include <memory>
#include <nlohmann/json.hpp>

#include "polar/cli/commands.h"
#include "polar/common/error.h"
#include "polar/data/builder.h"
#include "polar/dist/dist.h"

namespace polar::cli {

namespace {

void print_summary(const nlohmann::json& m, const std::string& output) {
  const auto& train = m["splits"]["train"];
  const auto& eval = m["splits"]["eval"];
  const auto& trunc = m["truncation"];
  fmt::print("wrote {}\n", output);
  fmt::print("  records   {} read, {} skipped {}", m["records"]["accepted"].get<int64_t>(),
             m["records"]["skipped"].get<int64_t>(), m["records"]["skipped_by_reason"].dump());
  if (m["records"].contains("duplicates"))
    fmt::print(", {} duplicates dropped", m["records"]["duplicates"].get<int64_t>());
  if (m["records"].contains("response_filter"))
    fmt::print("\n  filter    {}", m["records"]["response_filter"].dump());
  fmt::print("\n  prompts   {} train, {} eval, {} skipped {}\n",
             m["prompts"]["train"].get<int64_t>(), m["prompts"]["eval"].get<int64_t>(),
             m["prompts"]["skipped"].get<int64_t>(), m["prompts"]["skipped_by_reason"].dump());
  fmt::print("  groups    {} train, {} eval ({} sequences, {} pairs in train)\n",
             train["groups"].get<int64_t>(), eval["groups"].get<int64_t>(),
             train["sequences"].get<int64_t>(), train["pairs"].get<int64_t>());
  if (m.contains("groups_dropped")) fmt::print("  dropped   {}\n", m["groups_dropped"].dump());
  fmt::print("  tokens    {} train, {} eval (stored once per group prefix)\n",
             train["stored_tokens"].get<int64_t>(), eval["stored_tokens"].get<int64_t>());
  fmt::print(
      "  truncated {} groups prompt-cut ({} tokens per copy), {} response-cut ({} tokens), {} "
      "dropped as too long\n",
      trunc["groups_prompt_cut"].get<int64_t>(), trunc["prompt_tokens_cut"].get<int64_t>(),
      trunc["groups_response_cut"].get<int64_t>(), trunc["response_tokens_cut"].get<int64_t>(),
      trunc["groups_dropped_too_long"].get<int64_t>());
}

void add_limit_options(CLI::App* cmd, TemplateLimits& limits) {
  cmd->add_option("--max-length", limits.max_length, "Tokens per full sequence")
      ->capture_default_str();
  cmd->add_option("--max-response-length", limits.max_response_length,
                  "Tokens per reference/candidate (cut on the right)")
      ->capture_default_str();
}

// "2GiB", "512MiB", "4G", "1.5GB" or a plain number of bytes; K/M/G/T are powers of 1024.
int64_t parse_byte_size(const std::string& text) {
  size_t end = 0;
  double value = 0;
  try {
    value = std::stod(text, &end);
  } catch (const std::exception&) {
    end = 0;
  }
  std::string unit = text.substr(end);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::vector<std::pair<std::string, double>> units = {{"", 1},
                                                             {"B", 1},
                                                             {"K", 1024.0},
                                                             {"KB", 1024.0},
                                                             {"KIB", 1024.0},
                                                             {"M", 1048576.0},
                                                             {"MB", 1048576.0},
                                                             {"MIB", 1048576.0},
                                                             {"G", 1073741824.0},
                                                             {"GB", 1073741824.0},
                                                             {"GIB", 1073741824.0},
                                                             {"T", 1099511627776.0},
                                                             {"TB", 1099511627776.0},
                                                             {"TIB", 1099511627776.0}};
  for (const auto& [name, scale] : units) {
    if (end > 0 && unit == name && value > 0 && value * scale < 9e18)
      return static_cast<int64_t>(value * scale);
  }
  throw Error("--memory-budget: expected a size such as 2GiB, 512MiB or a number of bytes, got \"" +
              text + "\"");
}

// --num-workers/--worker-index, else the launcher's RANK/WORLD_SIZE or Slurm's
// SLURM_PROCID/SLURM_NTASKS.
void resolve_workers(PretrainBuildOptions& o, bool given) {
  if (given) return;
  const dist::DistEnv env = dist::DistEnv::from_environment();
  o.num_workers = env.world_size;
  o.worker_index = env.rank;
}

// The pretrain build's options plus the command-line forms parsed when the command runs.
struct PretrainArgs {
  PretrainBuildOptions build;
  std::string template_name = "pretrain";
  std::string pairing = "all-pairs";
  std::string negatives_from = "any";
  std::string budget = "4GiB";
  CLI::Option* workers = nullptr;
  CLI::Option* quiet = nullptr;
  CLI::Option* no_filter = nullptr;
};

// Inputs, output and how the groups are formed.
void add_pretrain_group_options(CLI::App* p, PretrainArgs& args) {
  PretrainBuildOptions& pre = args.build;
  p->add_option("--trajectories", pre.trajectories,
                "JSONL files or globs (.jsonl, .jsonl.gz, .jsonl.zst) of {prompt, policy, "
                "response[, category]}")
      ->required();
  p->add_option("--tokenizer", pre.tokenizer, "Tokenizer directory or .model file")->required();
  p->add_option("--output", pre.output, "Dataset directory to create")->required();
  p->add_option("--negatives", pre.negatives,
                "Negatives per group (K), from K distinct other policies")
      ->capture_default_str();
  p->add_option("--negatives-from", args.negatives_from,
                "Policy of each negative: any (other policy), same-family (another policy of "
                "the reference's family), mixed:P (same-family with probability P, else any) or "
                "nearest (the family neighbour nearest by step); needs --policies unless any")
      ->capture_default_str();
  p->add_option("--policies", pre.policies,
                "Policy table: JSON array (or {\"policies\": [...]}) of {name, family[, step]}, "
                "e.g. a pool file");
  p->add_option("--seed", pre.seed, "Seed for pairing, negatives and the eval split")
      ->capture_default_str();
  add_limit_options(p, pre.limits);
  p->add_option("--eval-fraction", pre.eval_fraction, "Share of prompts held out for eval")
      ->capture_default_str();
  p->add_option("--template", args.template_name,
                "pretrain (prompt joined to responses) or finetune (\"\\n\" between)")
      ->check(CLI::IsMember({"pretrain", "finetune"}))
      ->capture_default_str();
  p->add_option("--pairing", args.pairing,
                "all-pairs (every disjoint same-policy pair is a reference/positive) or paper "
                "(POLAR's: --passes "
                "groups per prompt, the policy drawn uniformly)")
      ->check(CLI::IsMember({"all-pairs", "paper"}))
      ->capture_default_str();
  p->add_option("--groups-per-prompt", pre.groups_per_prompt,
                "all-pairs: cap on groups per prompt (0 = no cap)")
      ->capture_default_str();
  p->add_option("--passes", pre.passes, "paper: groups per prompt, one per pass")
      ->capture_default_str();
}

// Memory, threads, and how the build is shared between processes.
void add_pretrain_resource_options(CLI::App* p, PretrainArgs& args) {
  PretrainBuildOptions& pre = args.build;
  p->add_option("--memory-budget", args.budget,
                "Memory to stay within (e.g. 2GiB); larger inputs spill to disk")
      ->capture_default_str();
  p->add_option("--partitions", pre.partitions,
                "Spill partitions (0 = from the input size and the budget)")
      ->capture_default_str();
  p->add_option("--threads", pre.threads, "Threads for parsing and tokenising (0 = all cores)")
      ->capture_default_str();
  args.workers =
      p->add_option("--num-workers", pre.num_workers,
                    "Processes sharing the build (default: WORLD_SIZE or SLURM_NTASKS, else 1)");
  p->add_option("--worker-index", pre.worker_index,
                "This process's part (default: RANK or SLURM_PROCID)")
      ->needs(args.workers);
  p->add_option("--spill-dir", pre.spill_dir,
                "Directory for spill files (default: next to the output)");
}

void add_pretrain_flags(CLI::App* p, PretrainArgs& args) {
  PretrainBuildOptions& pre = args.build;
  p->add_flag("--skip-invalid", pre.skip_invalid, "Skip and count bad lines instead of failing");
  args.no_filter = p->add_flag("--no-response-filter",
                               "Keep responses as they are (no loop, unfinished-ending or "
                               "aborted-response filter)");
  p->add_flag("--drop-unfinished", pre.response_filter.drop_unfinished,
              "Drop length-cut responses instead of cutting them back to their last sentence");
  p->add_flag("--overwrite", pre.overwrite, "Replace an existing dataset at --output");
  args.quiet = p->add_flag("--no-progress", "No progress line");
}

void run_pretrain_build(PretrainArgs& args) {
  PretrainBuildOptions& pre = args.build;
  pre.response_filter.enabled = args.no_filter->count() == 0;
  pre.template_kind = parse_template_kind(args.template_name);
  pre.pairing = parse_pairing_scheme(args.pairing);
  pre.negatives_from = parse_negative_selection(args.negatives_from);
  pre.memory_budget = parse_byte_size(args.budget);
  pre.progress = args.quiet->count() == 0;
  resolve_workers(pre, args.workers->count() > 0);
  const auto manifest = build_pretrain_dataset(pre);
  if (pre.num_workers > 1) {
    fmt::print(
        "wrote part {} of {}: {}; run `polar data merge --output {} --num-workers {}` when all "
        "are done\n",
        pre.worker_index, pre.num_workers,
        pretrain_part_dir(pre.output, pre.worker_index, pre.num_workers), pre.output,
        pre.num_workers);
    return;
  }
  print_summary(manifest, pre.output);
}

void add_pretrain_command(CLI::App* cmd) {
  auto args = std::make_shared<PretrainArgs>();
  auto* p = cmd->add_subcommand("pretrain",
                                "Policy-discrimination groups from trajectories of many policies");
  add_pretrain_group_options(p, *args);
  add_pretrain_resource_options(p, *args);
  add_pretrain_flags(p, *args);
  p->callback([args] { run_pretrain_build(*args); });
}

void add_merge_command(CLI::App* cmd) {
  auto output = std::make_shared<std::string>();
  auto num_workers = std::make_shared<int>(0);
  auto overwrite = std::make_shared<bool>(false);
  auto* m = cmd->add_subcommand(
      "merge", "Join the parts of a `data pretrain --num-workers W` build into one dataset");
  m->add_option("--output", *output, "The --output the workers were given")->required();
  m->add_option("--num-workers", *num_workers, "W, as the workers were given")->required();
  m->add_flag("--overwrite", *overwrite, "Replace an existing dataset at --output");
  m->callback([output, num_workers, overwrite] {
    print_summary(merge_pretrain_parts(*output, *num_workers, *overwrite), *output);
  });
}

}  // namespace

void add_data_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("data", "Build POLAR token shards from JSONL");
  cmd->require_subcommand(1);
  add_pretrain_command(cmd);
  add_merge_command(cmd);

  auto pref = std::make_shared<PreferenceBuildOptions>();
  auto* f = cmd->add_subcommand("preference",
                                "Fine-tuning groups from {prompt, reference, chosen, rejected}");
  f->add_option("--input", pref->input,
                "JSONL of {prompt, reference, chosen, rejected[, category]}")
      ->required()
      ->check(CLI::ExistingFile);
  f->add_option("--tokenizer", pref->tokenizer, "Tokenizer directory or .model file")->required();
  f->add_option("--output", pref->output, "Dataset directory to create")->required();
  add_limit_options(f, pref->limits);
  f->add_option("--eval-fraction", pref->eval_fraction, "Share of prompts held out for eval")
      ->capture_default_str();
  f->add_option("--seed", pref->seed, "Seed for the eval split")->capture_default_str();
  f->add_flag("--skip-invalid", pref->skip_invalid, "Skip and count bad lines instead of failing");
  f->add_flag("--overwrite", pref->overwrite, "Replace an existing dataset at --output");
  f->callback([pref] { print_summary(build_preference_dataset(*pref), pref->output); });
}

}  // namespace polar::cli
