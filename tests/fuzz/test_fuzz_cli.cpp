// The fuzz harness through the `polar` binary (see test_fuzz.cpp): malformed inputs to
// `polar data preference|pretrain` (and a damaged tokenizer.json), `polar train`, `polar eval`
// and `polar sample --pool`. A case fails when the process
// dies by a signal, runs past the deadline, exits 0 on input the in-process reader rejects,
// exits non-zero without naming its input, or leaves output behind after failing.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "common/tiny_checkpoint.h"
#include "common/tiny_data.h"
#include "fuzz/fuzz_seeds.h"
#include "fuzz/fuzz_util.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/common/error.h"
#include "polar/config/train_config.h"
#include "polar/data/records.h"
#include "polar/sample/pool.h"
#include "polar/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using polar::fuzz::Mutator;
using polar::fuzz::ProcessResult;
using polar::fuzz::Tally;
using polar::testing::TempDir;

namespace {

using polar::fuzz::contains;
const uint64_t kSeed = polar::fuzz::seed();
const int64_t kCliCases = polar::fuzz::env_count("POLAR_FUZZ_CLI_CASES", 3);
constexpr double kTimeout = 240;
const std::string kPolar = POLAR_BINARY_DIR "/polar";
// Small enough that no accepted shape can take the shared test machine's memory.
const std::map<std::string, std::string> kEnv = {{"POLAR_MEMORY_BYTES", "2000000000"},
                                                 {"OMP_NUM_THREADS", "1"}};

// Checks one run: `invalid` says the in-process reader rejected the input; `output` is what a
// successful run writes; `names` are the strings one of which an error message must contain.
void check_run(const ProcessResult& r, bool invalid, const std::string& output,
               const std::vector<std::string>& names, Tally& t) {
  ++t.cases;
  const std::string detail = "exit " + std::to_string(r.exit_code) + ": " +
                             r.output.substr(r.output.size() > 800 ? r.output.size() - 800 : 0);
  if (r.timed_out) return t.fail("hang", detail);
  if (r.signaled) return t.fail("killed by signal " + std::to_string(r.signal), detail);
  if (r.exit_code == 0) {
    ++t.accepted;
    if (invalid) t.fail("exit 0 on invalid input", detail);
    if (!fs::exists(output)) t.fail("exit 0 without output", detail);
    return;
  }
  ++t.rejected;
  if (fs::exists(output)) t.fail("output left by a failed run", detail);
  bool named = false;
  for (const auto& n : names) named = named || contains(r.output, n);
  if (!named) t.fail("message without the input", detail);
  if (contains(r.output, "unexpected error")) t.fail("unexpected error", detail);
}

template <typename Read>
bool rejected_in_process(Read read, const std::string& path) {
  try {
    polar::ReadStats stats;
    read(path, false, &stats);
    return false;
  } catch (const polar::Error&) {
    return true;
  }
}

void report(const Tally& t, const std::string& name) {
  std::cout << t.summary(name) << std::endl;
  for (const auto& e : t.examples) ADD_FAILURE() << name << ": " << e;
  EXPECT_EQ(t.failures, 0);
}

std::vector<json> preference_lines() {
  std::vector<json> out;
  const char* words[] = {"the sea",    "a tree",     "many numbers",
                         "what is 12", "yes and no", "reward model"};
  for (int i = 0; i < 12; ++i)
    out.push_back({{"prompt", std::string("how many ") + words[i % 6]},
                   {"reference", words[(i + 1) % 6]},
                   {"chosen", words[(i + 2) % 6]},
                   {"rejected", words[(i + 3) % 6]}});
  return out;
}

std::string jsonl(Mutator& m, const std::vector<json>& lines) {
  std::string text;
  const size_t hit = m.below(lines.size());
  for (size_t i = 0; i < lines.size(); ++i)
    text += (i == hit ? m.mutate(lines[i]) : lines[i].dump()) + "\n";
  return text;
}

// `polar data SUBCOMMAND INPUT_FLAG FILE` on kCliCases files of `lines` with one line damaged.
template <typename Read>
void run_data_campaign(const std::string& name, uint64_t stream, const std::vector<json>& lines,
                       const std::pair<std::string, std::string>& subcommand, Read read) {
  TempDir tmp;
  Mutator m(kSeed + stream);
  Tally t;
  const std::string input = tmp / "input.jsonl", out = tmp / "dataset";
  for (int64_t c = 0; c < kCliCases; ++c) {
    polar::fuzz::write_file(input, jsonl(m, lines));
    fs::remove_all(out);
    auto r = polar::fuzz::run_process(
        {kPolar, "data", subcommand.first, subcommand.second, input, "--tokenizer",
         polar::testing::tiny_tokenizer_dir(), "--output", out},
        kEnv, kTimeout, tmp / "log.txt");
    check_run(r, rejected_in_process(read, input), out + "/manifest.json", {input}, t);
  }
  report(t, name);
}

}  // namespace

TEST(FuzzCli, DataPreference) {
  run_data_campaign("cli-data-preference", 11, preference_lines(), {"preference", "--input"},
                    polar::read_preferences);
}

TEST(FuzzCli, DataPretrain) {
  std::vector<json> lines;
  for (int p = 0; p < 4; ++p)
    for (int k = 0; k < 3; ++k)
      for (int r = 0; r < 2; ++r)
        lines.push_back({{"prompt", "what is " + std::to_string(p)},
                         {"policy", "p" + std::to_string(k)},
                         {"response", "the sea " + std::to_string(k * 2 + r)}});
  run_data_campaign("cli-data-pretrain", 12, lines, {"pretrain", "--trajectories"},
                    polar::read_trajectories);
}

TEST(FuzzCli, Train) {
  TempDir tmp;
  polar::testing::write_copy_task_dataset(tmp / "data", 16, 4);
  Mutator m(kSeed + 13);
  Tally t;
  const json base = json::parse(polar::testing::tiny_train_config(tmp / "data", tmp / "run", 2));
  // Keep an accepted run short, whatever the mutation did to these keys.
  const std::vector<std::string> keep = {"train.steps=2",
                                         "train.batch_groups=2",
                                         "run.output_dir=" + (tmp / "run"),
                                         "data.micro_batch_tokens=512",
                                         "data.row_tokens=128",
                                         "eval.max_groups=4"};
  for (int64_t c = 0; c < kCliCases; ++c) {
    const std::string config = tmp / "config.json";
    polar::fuzz::write_file(config, m.mutate(base));
    fs::remove_all(tmp / "run");
    std::vector<std::string> argv = {kPolar, "train", "--config", config};
    for (const auto& k : keep) argv.insert(argv.end(), {"--set", k});
    bool invalid = false;
    try {
      polar::load_train_config(config, keep);
    } catch (const polar::Error&) {
      invalid = true;
    }
    auto r = polar::fuzz::run_process(argv, kEnv, kTimeout, tmp / "log.txt");
    check_run(r, invalid, tmp / "run/final/model.safetensors", {config, "--set", "data", "model"},
              t);
  }
  report(t, "cli-train");
}

TEST(FuzzCli, EvalCheckpoint) {
  TempDir tmp;
  const std::string base = polar::testing::write_tiny_checkpoint(tmp / "base", false);
  std::string data;
  for (const auto& l : preference_lines()) data += l.dump() + "\n";
  polar::fuzz::write_file(tmp / "prefs.jsonl", data);
  Mutator m(kSeed + 14);
  Tally t;
  for (int64_t c = 0; c < kCliCases; ++c) {
    const std::string dir = tmp / "checkpoint", out = tmp / "eval.json";
    fs::remove_all(dir);
    fs::copy(base, dir, fs::copy_options::recursive);
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(dir))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    const fs::path victim = files[m.below(files.size())];
    const std::string bytes = polar::fuzz::read_file(victim.string());
    const json parsed = victim.extension() == ".json" ? json::parse(bytes, nullptr, false)
                                                      : json(json::value_t::discarded);
    polar::fuzz::write_file(victim.string(),
                            parsed.is_discarded() ? m.mutate_bytes(bytes) : m.mutate(parsed));
    bool invalid = false;
    try {
      polar::load_model(dir, torch::kCPU);
    } catch (const polar::Error&) {
      invalid = true;
    }
    auto r = polar::fuzz::run_process({kPolar, "eval", "--checkpoint", dir, "--data",
                                       tmp / "prefs.jsonl", "--output", out, "--device", "cpu"},
                                      kEnv, kTimeout, tmp / "log.txt");
    check_run(r, invalid, out, {dir}, t);
  }
  report(t, "cli-eval-checkpoint");
}

TEST(FuzzCli, DataPreferenceWithATokenizerJson) {
  TempDir tmp;
  std::string data;
  for (const auto& l : preference_lines()) data += l.dump() + "\n";
  polar::fuzz::write_file(tmp / "prefs.jsonl", data);
  const auto seeds = polar::fuzz::tokenizer_json_seeds();
  Mutator m(kSeed + 15);
  Tally t;
  for (int64_t c = 0; c < kCliCases; ++c) {
    const std::string dir = tmp / "tokenizer", out = tmp / "dataset";
    polar::fuzz::remove_tree(dir);
    polar::fuzz::remove_tree(out);
    fs::create_directories(dir);
    polar::fuzz::write_file(dir + "/tokenizer.json", m.mutate(seeds[m.below(seeds.size())]));
    bool invalid = false;
    try {
      polar::Tokenizer::load(dir);
    } catch (const polar::Error&) {
      invalid = true;
    }
    auto r = polar::fuzz::run_process({kPolar, "data", "preference", "--input", tmp / "prefs.jsonl",
                                       "--tokenizer", dir, "--output", out},
                                      kEnv, kTimeout, tmp / "log.txt");
    check_run(r, invalid, out + "/manifest.json", {dir}, t);
  }
  report(t, "cli-tokenizer-json");
}

// Pools the reader refuses must stop `polar sample` before it samples anything, naming the pool
// (accepted pools would reach for their servers, so they are only counted).
TEST(FuzzCli, SampleWithAPoolItRefuses) {
  TempDir tmp;
  polar::fuzz::write_file(tmp / "prompts.jsonl", "{\"prompt\": \"what is 1\"}\n");
  Mutator m(kSeed + 16);
  Tally t;
  const std::string pool = tmp / "pool.json", out = tmp / "samples.jsonl";
  for (int64_t c = 0; c < kCliCases * 4; ++c) {
    polar::fuzz::write_file(pool, m.mutate(polar::fuzz::pool_seed()));
    try {
      polar::sample::read_pool(pool);
      continue;  // valid: not run
    } catch (const polar::Error&) {
    }
    fs::remove(out);
    auto r = polar::fuzz::run_process({kPolar, "sample", "--pool", pool, "--prompts",
                                       tmp / "prompts.jsonl", "--output", out, "--no-progress"},
                                      kEnv, kTimeout, tmp / "log.txt");
    check_run(r, true, out, {pool}, t);
  }
  report(t, "cli-sampler-pool");
}
