#include "fuzz/fuzz_util.h"

#include <fmt/format.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace polar::fuzz {

using nlohmann::json;

namespace {

// Placeholders for numbers that a json value cannot hold; replaced in the rendered text.
const std::vector<std::pair<std::string, std::string>> kRawNumbers = {
    {"\"@@BIG@@\"", "1e999"},
    {"\"@@NEGBIG@@\"", "-1e999999"},
    {"\"@@U64@@\"", "18446744073709551616"},
    {"\"@@TINY@@\"", "1e-400"},
    {"\"@@LONG@@\"", "123456789012345678901234567890"},
    {"\"@@NAN@@\"", "NaN"},
    {"\"@@DEEP@@\"", std::string(5000, '[') + std::string(5000, ']')},
};

// Every path of `v` (objects and arrays, depth first), as JSON pointers.
void collect_paths(const json& v, const json::json_pointer& at,
                   std::vector<json::json_pointer>& out) {
  out.push_back(at);
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) collect_paths(*it, at / it.key(), out);
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) collect_paths(v[i], at / i, out);
  }
}

}  // namespace

int64_t env_count(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoll(v) : fallback;
}

uint64_t seed() { return static_cast<uint64_t>(env_count("POLAR_FUZZ_SEED", 20261126)); }

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

json Mutator::hostile_value() {
  static const std::vector<json> palette = {
      nullptr,
      -1,
      0,
      1,
      -1e30,
      1e30,
      2147483648LL,
      4611686018427387904LL,
      9223372036854775807LL,
      -2147483649LL,
      0.5,
      -0.0,
      3.5,
      1e-320,
      "",
      "bogus",
      "12",
      true,
      false,
      json::array(),
      json::object(),
      json::array({"user"}),
      12345,
      json::array({nullptr}),
      json::object({{"role", "user"}}),
      json::array({json::object({{"role", "bogus"}, {"content", "x"}})}),
      json::array({json::object({{"role", 12345}, {"content", "x"}})}),
      json::array({json::object({{"role", json::array({"user"})}, {"content", "x"}})}),
      json::array({json::object({{"role", "user"}, {"content", ""}})}),
      json::array({json::object({{"role", "user"}, {"content", 7}})}),
      std::string(100000, 'a'),
  };
  if (chance(0.2)) {
    const std::string& placeholder = kRawNumbers[below(kRawNumbers.size())].first;
    return placeholder.substr(1, placeholder.size() - 2);  // rendered as the quoted placeholder
  }
  return palette[below(palette.size())];
}

std::string Mutator::mutate_json(const json& value) {
  json v = value;
  std::vector<json::json_pointer> paths;
  collect_paths(v, json::json_pointer(), paths);
  const json::json_pointer at = paths[below(paths.size())];
  const uint64_t op = below(10);
  if (op == 0 && !at.empty()) {  // drop the key or element
    json& parent = v[at.parent_pointer()];
    if (parent.is_object())
      parent.erase(at.back());
    else if (parent.is_array())
      parent.erase(static_cast<size_t>(std::stoul(at.back())));
  } else if (op == 1 && v[at].is_object()) {  // an unknown key
    v[at]["unknown_key_" + std::to_string(below(100))] = 1;
  } else if (op == 2) {  // the whole document replaced
    v = hostile_value();
  } else {
    v[at] = hostile_value();
  }
  std::string text = v.dump();
  for (const auto& [placeholder, raw] : kRawNumbers) {
    for (size_t pos; (pos = text.find(placeholder)) != std::string::npos;)
      text.replace(pos, placeholder.size(), raw);
  }
  return text;
}

std::string Mutator::mutate_bytes(std::string b) {
  const int edits = 1 + static_cast<int>(below(4));
  for (int e = 0; e < edits; ++e) {
    const size_t n = b.size();
    switch (below(6)) {
      case 0:  // bit flip
        if (n) b[below(n)] ^= static_cast<char>(1u << below(8));
        break;
      case 1:  // truncate
        b.resize(below(n + 1));
        break;
      case 2:  // random bytes inserted
        b.insert(below(n + 1), std::string(1 + below(8), static_cast<char>(below(256))));
        break;
      case 3:  // a span deleted
        if (n) b.erase(below(n), 1 + below(16));
        break;
      case 4:  // a span duplicated
        if (n) {
          const size_t at = below(n);
          b.insert(below(n + 1), b.substr(at, 1 + below(32)));
        }
        break;
      default:  // a byte overwritten
        if (n) b[below(n)] = static_cast<char>(below(256));
    }
  }
  return b;
}

std::string Mutator::mutate(const json& value) {
  const uint64_t how = below(3);
  if (how == 0) return mutate_bytes(value.dump());
  std::string text = mutate_json(value);
  return how == 2 ? mutate_bytes(text) : text;
}

ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& env, double timeout_s,
                          const std::string& log_path) {
  ProcessResult r;
  const pid_t pid = ::fork();
  if (pid == 0) {
    FILE* out = std::freopen(log_path.c_str(), "w", stdout);
    (void)out;
    ::dup2(::fileno(stdout), 2);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  r.signaled = WIFSIGNALED(status);
  r.signal = r.signaled ? WTERMSIG(status) : 0;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.output = read_file(log_path);
  return r;
}

void Tally::fail(const std::string& kind, const std::string& detail) {
  ++failures;
  ++failure_kinds[kind];
  if (examples.size() < 5) examples.push_back(kind + ": " + detail.substr(0, 600));
}

std::string Tally::summary(const std::string& name) const {
  std::string kinds;
  for (const auto& [k, n] : failure_kinds) kinds += fmt::format(" {}={}", k, n);
  return fmt::format(
      "fuzz[{}]: {} cases, {} rejected with a message naming the input, {} accepted, {} failures{}",
      name, cases, rejected, accepted, failures, kinds);
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  ::nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int flag, struct FTW*) {
        return flag == FTW_DP ? ::rmdir(p) : ::unlink(p);
      },
      16, FTW_DEPTH | FTW_PHYS);
}

std::string damage_tree_copy(Mutator& m, const std::string& from, const std::string& to,
                             double delete_chance) {
  namespace fs = std::filesystem;
  remove_tree(to);
  fs::copy(from, to, fs::copy_options::recursive);
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(to))
    if (e.is_regular_file()) files.push_back(fs::relative(e.path(), to));
  std::sort(files.begin(), files.end());
  const fs::path rel = files[m.below(files.size())];
  const std::string path = (fs::path(to) / rel).string();
  if (m.chance(delete_chance)) {
    fs::remove(path);
    return rel.string();
  }
  const std::string bytes = read_file(path);
  const nlohmann::json parsed = rel.extension() == ".json"
                                    ? nlohmann::json::parse(bytes, nullptr, false)
                                    : nlohmann::json(nlohmann::json::value_t::discarded);
  write_file(path, parsed.is_discarded() ? m.mutate_bytes(bytes) : m.mutate(parsed));
  return rel.string();
}

}  // namespace polar::fuzz
