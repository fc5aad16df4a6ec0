// `polar sample`: trajectories from a pool of policies, the first step of the
// pipeline. The work is in sample/.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include "polar/cli/commands.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/sample/sampler.h"

namespace polar::cli {

namespace {

struct SampleArgs {
  std::string pool, prompts, corpus, tokenizer, corpus_category, output, scheme = "paper";
  int64_t samples_per_prompt = 1, prefix_tokens = 1024, threads = 0;
  double instruction_share = -1;  // < 0: every given prompt
  uint64_t seed = 0;
  bool no_progress = false, no_filter = false, drop_unfinished = false;
};

void run(const SampleArgs& a) {
  POLAR_CHECK(!a.prompts.empty() || !a.corpus.empty(),
              "polar sample: give --prompts FILE and/or --corpus FILE");
  POLAR_CHECK(a.corpus.empty() || !a.tokenizer.empty(),
              "polar sample: --corpus needs --tokenizer DIR (prefixes are "
              "counted in its tokens)");
  if (a.threads > 0) torch::set_num_threads(static_cast<int>(a.threads));
  sample::SampleRunOptions o;
  o.policies = sample::read_pool(a.pool);
  if (!a.prompts.empty()) o.prompts = sample::read_prompts(a.prompts);
  if (!a.corpus.empty()) {
    sample::CorpusPrefixOptions c;
    c.max_prefix_tokens = a.prefix_tokens;
    c.seed = a.seed;
    c.category = a.corpus_category;
    const auto more = sample::corpus_prefix_prompts(a.corpus, Tokenizer::load(a.tokenizer), c);
    o.prompts.insert(o.prompts.end(), more.begin(), more.end());
  }
  if (a.instruction_share >= 0)
    o.prompts = sample::with_instruction_share(o.prompts, a.instruction_share, a.seed);
  o.output = a.output;
  o.scheme = sample::parse_sample_scheme(a.scheme);
  POLAR_CHECK(o.scheme == sample::SampleScheme::All || a.samples_per_prompt == 1,
              "polar sample: --samples-per-prompt is for --scheme all (the paper scheme samples "
              "policy A twice and B once per prompt)");
  o.samples_per_prompt = a.samples_per_prompt;
  o.seed = a.seed;
  o.filter.enabled = !a.no_filter;
  o.filter.drop_unfinished = a.drop_unfinished;
  o.progress = !a.no_progress;
  const auto stats = sample::run_sampling(o);
  spdlog::info(
      "wrote {} records to {} ({} were there already); {} tokens in {:.1f}s "
      "({:.1f} tokens/s); {} prompts cut to fit a context, {} skipped",
      stats.written, a.output, stats.existing, stats.tokens, stats.seconds,
      stats.seconds > 0 ? static_cast<double>(stats.tokens) / stats.seconds : 0.0,
      stats.prompts_cut, stats.context_skipped);
  spdlog::info("response filter: {}", stats.filter.to_json().dump());
  write_json_file_atomic(a.output + ".summary.json", stats.to_json());
}

}  // namespace

void add_sample_command(CLI::App& app) {
  auto args = std::make_shared<SampleArgs>();
  auto* s = app.add_subcommand(
      "sample", "sample trajectories {prompt, policy, response} from a pool of policies");
  s->add_option("--pool", args->pool,
                "pool JSON: policies served by OpenAI-compatible servers or "
                "built-in HF causal LMs")
      ->required();
  s->add_option("--prompts", args->prompts, "prompts JSONL {\"prompt\"[, \"category\"]}");
  s->add_option("--corpus", args->corpus,
                "texts (one per line, or JSONL with \"text\") whose random "
                "prefixes are prompts");
  s->add_option("--tokenizer", args->tokenizer,
                "tokenizer directory counting --corpus prefix tokens");
  s->add_option("--prefix-tokens", args->prefix_tokens,
                "corpus prompts are prefixes of 1..L tokens")
      ->capture_default_str();
  s->add_option("--corpus-category", args->corpus_category, "category of the corpus prompts");
  s->add_option("--output", args->output, "trajectories JSONL; an existing one is resumed")
      ->required();
  s->add_option("--scheme", args->scheme,
                "paper: per prompt two random policies, A samples twice and B once (what "
                "`polar data pretrain --pairing paper` pairs); all: every policy answers every "
                "prompt --samples-per-prompt times")
      ->check(CLI::IsMember({"paper", "all"}))
      ->capture_default_str();
  s->add_option("--samples-per-prompt", args->samples_per_prompt,
                "--scheme all: responses per (policy, prompt)");
  s->add_option("--instruction-share", args->instruction_share,
                "keep only as many --prompts (instructions) as make up this share of all prompts "
                "(the rest are --corpus prefixes); default: all of them");
  s->add_flag("--no-response-filter", args->no_filter,
              "write responses as they come (no loop, unfinished-ending or aborted filter)");
  s->add_flag("--drop-unfinished", args->drop_unfinished,
              "drop length-cut responses instead of cutting them back to their last sentence");
  s->add_option("--seed", args->seed,
                "base seed of every (policy, prompt, sample) seed and of "
                "corpus prefixes");
  s->add_option("--threads", args->threads,
                "CPU threads of the built-in models (0: LibTorch's default)");
  s->add_flag("--no-progress", args->no_progress, "no progress line");
  s->callback([args] { run(*args); });
}

}  // namespace polar::cli
