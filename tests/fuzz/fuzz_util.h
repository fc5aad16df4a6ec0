// The fuzz harness's pieces: seeded mutators of JSON text and bytes, a child-process runner with
// a deadline, and the case counts each campaign reports.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace polar::fuzz {

// Cases per input kind: POLAR_FUZZ_CASES (in-process) and POLAR_FUZZ_CLI_CASES (through the
// `polar` binary) override the defaults; POLAR_FUZZ_SEED the seed.
int64_t env_count(const char* name, int64_t fallback);
uint64_t seed();  // POLAR_FUZZ_SEED, default 20261126
bool contains(const std::string& text, const std::string& part);

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}
  // One structural change of `value` (a value at a random path replaced by a hostile one:
  // null, 1e999, 2^63, -1, "", wrong types, deep nesting; a key dropped or added; the top level
  // replaced), rendered as text. Numbers JSON cannot hold (1e999) are spliced in as text.
  std::string mutate_json(const nlohmann::json& value);
  // Byte-level damage: flips, truncation, insertions, deletions, duplications.
  std::string mutate_bytes(std::string bytes);
  // Either of the above, or both.
  std::string mutate(const nlohmann::json& value);
  uint64_t below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

 private:
  nlohmann::json hostile_value();
  std::mt19937_64 rng_;
};

struct ProcessResult {
  bool signaled = false;   // died by a signal (a crash, or killed by the deadline)
  bool timed_out = false;  // still running at the deadline (then killed)
  int exit_code = -1;
  int signal = 0;
  std::string output;  // stdout and stderr
};

// Runs argv[0] with `argv`, environment `env` added, killed after `timeout_s`.
ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& env, double timeout_s,
                          const std::string& log_path);

// Outcomes of one campaign over one input kind.
struct Tally {
  int64_t cases = 0, accepted = 0, rejected = 0, failures = 0;
  std::map<std::string, int64_t> failure_kinds;
  std::vector<std::string> examples;  // first few failures, for the test log
  void fail(const std::string& kind, const std::string& detail);
  std::string summary(const std::string& name) const;
};

void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);
// Removes a file or directory tree (std::filesystem::remove_all is avoided: libtorch.so exports a
// copy that crashes).
void remove_tree(const std::string& path);
// Copies the directory `from` to `to` (replacing `to`) and damages one of its files, chosen at
// random: deleted with probability `delete_chance`, else mutated (JSON files structurally or as
// bytes, other files as bytes). Returns the file's path relative to `to`.
std::string damage_tree_copy(Mutator& m, const std::string& from, const std::string& to,
                             double delete_chance);

}  // namespace polar::fuzz
