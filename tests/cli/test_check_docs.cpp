// scripts/check_docs.py on a planted stale page (tests/cli/fixtures/stale_docs.md): every renamed
// or removed flag, subcommand, config key, path and quoted output is reported as FILE:LINE: reason,
// and nothing that still holds is. The real docs are checked by the ctest Docs.Check.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "common/tiny_data.h"
#include "fuzz/fuzz_util.h"

namespace fs = std::filesystem;
using polar::testing::TempDir;

namespace {

std::string python() {
  const std::string venv = POLAR_SOURCE_DIR "/.venv/bin/python";
  return fs::exists(venv) ? venv : "python3";
}

polar::fuzz::ProcessResult check_docs(const TempDir& tmp, const std::vector<std::string>& files) {
  std::vector<std::string> argv = {python(),  POLAR_SOURCE_DIR "/scripts/check_docs.py",
                                   "--root",  POLAR_SOURCE_DIR,
                                   "--polar", POLAR_BINARY_DIR "/polar"};
  if (fs::exists(POLAR_BINARY_DIR "/polar-run")) {
    argv.push_back("--polar-run");
    argv.push_back(POLAR_BINARY_DIR "/polar-run");
  }
  argv.insert(argv.end(), files.begin(), files.end());
  return polar::fuzz::run_process(argv, {}, 300, tmp / "log.txt");
}

// The FILE:LINE: reason lines of the checker's output.
std::vector<std::string> problems(const std::string& output, const std::string& file) {
  std::vector<std::string> out;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(file + ":", 0) == 0) out.push_back(line);
  return out;
}

}  // namespace

TEST(CheckDocs, StalePageFailsWithFileLineAndReason) {
  TempDir tmp;
  const std::string page = "tests/cli/fixtures/stale_docs.md";
  const auto r = check_docs(tmp, {POLAR_SOURCE_DIR "/" + page});
  ASSERT_FALSE(r.signaled) << r.output;
  EXPECT_EQ(r.exit_code, 1) << r.output;
  // (line, what the reason must say)
  const std::vector<std::pair<int, std::string>> expected = {
      {7, "--output is required"},               // a flag renamed in the doc (--out)
      {8, "--learning-rate"},                    // a flag the program does not have
      {9, "evaluate"},                           // a subcommand that does not exist
      {10, "config key `train.learning_rate`"},  // --set with a key the config lacks
      {11, "--gpus"},                            // polar-run's own flags
      {12, "--resume-from"},                     // polar-run's worker command
      {13, "reference"},                         // a partial command still checks values
      {16, "--tokenizer is required"},           // a required flag left out
      {16, "config key `train.warmup`"},         // a key in inline code
      {17, "path `src/io/hf_import.cpp` does not exist"},
      {17, "path `no_such_page.md` does not exist"},  // a relative link
      {17, "--warm-up"},                              // a partial inline command
      {22, "the program prints `tokenizer_fingerprint`, the document shows `model`"},  // a quoted
                                                                                       // output
      {31, "config key `train.learning_rate`"},  // a JSON config block
  };
  const auto found = problems(r.output, page);
  for (const auto& [line, reason] : expected) {
    const std::string prefix = page + ":" + std::to_string(line) + ": ";
    bool seen = false;
    for (const auto& p : found)
      seen = seen || (p.rfind(prefix, 0) == 0 && p.find(reason) != std::string::npos);
    EXPECT_TRUE(seen) << "no problem " << prefix << "... " << reason << "\n" << r.output;
  }
  // Nothing else: the lines that still hold, the illustrative block and the partial commands that
  // only leave flags out are not reported.
  EXPECT_EQ(found.size(), expected.size()) << r.output;
}

TEST(CheckDocs, DryParseRunsNothing) {
  TempDir tmp;
  // A complete command is accepted and not run: the config file and output do not exist.
  const auto ok = polar::fuzz::run_process(
      {POLAR_BINARY_DIR "/polar", "train", "--config", tmp / "missing.json"},
      {{"POLAR_DRY_PARSE", "1"}}, 60, tmp / "log.txt");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  // Placeholders take the option's default; a literal value is still validated.
  const auto placeholder = polar::fuzz::run_process(
      {POLAR_BINARY_DIR "/polar", "plan", "--config", "@value@", "--nproc", "@value@"},
      {{"POLAR_DRY_PARSE", "1"}}, 60, tmp / "log.txt");
  EXPECT_EQ(placeholder.exit_code, 0) << placeholder.output;
  const auto bad = polar::fuzz::run_process(
      {POLAR_BINARY_DIR "/polar", "plan", "--config", "c.json", "--nproc", "0"},
      {{"POLAR_DRY_PARSE", "1"}}, 60, tmp / "log.txt");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.output, ::testing::HasSubstr("dry-parse: ValidationError: --nproc"));
  // Partial: required flags may be missing, unknown ones may not.
  const auto partial =
      polar::fuzz::run_process({POLAR_BINARY_DIR "/polar", "data", "pretrain"},
                               {{"POLAR_DRY_PARSE", "partial"}}, 60, tmp / "log.txt");
  EXPECT_EQ(partial.exit_code, 0) << partial.output;
  const auto unknown =
      polar::fuzz::run_process({POLAR_BINARY_DIR "/polar", "data", "pretrain", "--bogus"},
                               {{"POLAR_DRY_PARSE", "partial"}}, 60, tmp / "log.txt");
  EXPECT_THAT(unknown.output, ::testing::HasSubstr("not expected: --bogus"));
}

TEST(CheckDocs, ConfigKeysListsEveryKeyPath) {
  TempDir tmp;
  const auto r = polar::fuzz::run_process({POLAR_BINARY_DIR "/polar", "config", "--keys"}, {}, 60,
                                          tmp / "log.txt");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* key : {"\nstage\n", "\nmodel\n", "\nmodel.init_from\n", "\ntrain.lr\n",
                          "\ntrain.zero\n", "\nloss.margin\n", "\nrun.output_dir\n"})
    EXPECT_NE(("\n" + r.output).find(key), std::string::npos) << key << r.output;
}
