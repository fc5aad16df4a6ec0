// `polar sample` end to end with built-in models (tiny LlamaForCausalLM
// directories): output format read by the trajectory reader, reproducible runs,
// resume after an interrupted write, corpus-prefix prompts, and bad pools
// failing before anything is written.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "openai_test_server.h"
#include "polar/data/records.h"
#include "polar/sample/pool.h"
#include "polar/sample/prompts.h"
#include "sample_test_util.h"

namespace polar::sample {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string polar_bin() {
  const char* env = std::getenv("POLAR_BIN");
  return env ? env : POLAR_BINARY_DIR "/polar";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs polar with `args`; returns the exit status, with its output in *log.
int run_polar(const std::string& args, const std::string& log_path, std::string* log = nullptr) {
  const int rc = std::system((polar_bin() + " " + args + " > " + log_path + " 2>&1").c_str());
  if (log) *log = slurp(log_path);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::vector<std::string> sorted_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}

std::string pool_error(const std::string& pool_text) {
  try {
    parse_pool(json::parse(pool_text), "pool.json", "/base");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SamplePool, ReadsEntriesAndDefaults) {
  const auto pool =
      parse_pool(json::parse(
                     R"({"sampling": {"max_new_tokens": 32, "stop": ["\n"]}, "policies": [
      {"name": "a", "endpoint": "http://127.0.0.1:8000/v1", "model": "m", "chat": true, "concurrency": 4},
      {"name": "b", "model_dir": "models/b", "sampling": {"temperature": 0.7, "top_k": 0}}]})"),
                 "pool.json", "/base");
  ASSERT_EQ(pool.size(), 2u);
  EXPECT_TRUE(pool[0].is_server);
  EXPECT_TRUE(pool[0].server.chat);
  EXPECT_EQ(pool[0].server.concurrency, 4);
  EXPECT_EQ(pool[0].sampling.max_new_tokens, 32);
  EXPECT_EQ(pool[0].sampling.top_p, 0.9);
  EXPECT_EQ(pool[0].sampling.top_k, 50);
  EXPECT_EQ(pool[0].sampling.temperature, 1.0);
  EXPECT_FALSE(pool[1].is_server);
  EXPECT_EQ(pool[1].builtin.model_dir, "/base/models/b");
  EXPECT_EQ(pool[1].sampling.temperature, 0.7);
  EXPECT_EQ(pool[1].sampling.top_k, 0);
  EXPECT_EQ(pool[1].sampling.stop, std::vector<std::string>{"\n"});
}

TEST(SamplePool, BadEntriesNameTheEntryAndTheProblem) {
  struct Case {
    const char* pool;
    const char* expect;
  };
  for (
      const Case& c : {
          Case{R"({"policies": [{"model_dir": "x"}]})", "policies[0]: \"name\" is missing"},
          Case{
              R"({"policies": [{"name": "a", "model_dir": "x"}, {"name": "a", "model_dir": "y"}]})",
              "policies[1]: the name \"a\" is used by an earlier policy"},
          Case{R"({"policies": [{"name": "a"}]})", "give exactly one of \"endpoint\""},
          Case{R"({"policies": [{"name": "a", "model_dir": "x", "endpoint": "http://h:1"}]})",
               "exactly one of"},
          Case{R"({"policies": [{"name": "a", "endpoint": "ftp://h", "model": "m"}]})",
               "expected http://HOST:PORT"},
          Case{R"({"policies": [{"name": "a", "endpoint": "http://h:1"}]})",
               "\"model\" is missing"},
          Case{R"({"policies": [{"name": "a", "model_dir": "x", "temprature": 1}]})", "temprature"},
          Case{R"({"policies": [{"name": "a", "model_dir": "x", "sampling": {"top_p": 1.5}}]})",
               "top_p"},
          Case{R"({"policies": []})", "non-empty list"},
          Case{R"({"policies": [{"name": "a", "model_dir": "x"}], "extra": 1})", "extra"},
      }) {
    const std::string err = pool_error(c.pool);
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.pool << "\n -> " << err;
  }
}

class SampleCli : public ::testing::Test {
 protected:
  void SetUp() override {
    testutil::write_tiny_hf_lm(tmp_ / "lm_a", 21);
    testutil::write_tiny_hf_lm(tmp_ / "lm_b", 22);
    std::ofstream(tmp_ / "prompts.jsonl")
        << R"({"prompt": "the capital of China is", "category": "geo"})"
        << "\n"
        << R"({"prompt": [{"role": "user", "content": "a good answer"}]})"
        << "\n"
        << R"({"prompt": "policy says"})"
        << "\n";
    write_pool("pool.json", json::array({builtin("a", "lm_a"), builtin("b", "lm_b")}));
  }
  static json builtin(const std::string& name, const std::string& dir) {
    return {{"name", name}, {"model_dir", dir}, {"batch_size", 2}};
  }
  void write_pool(const std::string& file, const json& policies) {
    std::ofstream(tmp_ / file) << json{
        {"sampling", {{"max_new_tokens", 12}}},
        {"policies", policies}}.dump();
  }
  std::string sample_args(const std::string& pool, const std::string& out) {
    return "sample --pool " + (tmp_ / pool) + " --prompts " + (tmp_ / "prompts.jsonl") +
           " --output " + (tmp_ / out) +
           " --scheme all --samples-per-prompt 2 --seed 3 --threads 1 --no-response-filter";
  }
  testing::TempDir tmp_;
};

TEST_F(SampleCli, WritesTrajectoriesReproduciblyAndResumes) {
  std::string log;
  ASSERT_EQ(run_polar(sample_args("pool.json", "a.jsonl"), tmp_ / "log1", &log), 0) << log;
  EXPECT_NE(log.find("ETA"), std::string::npos) << log;
  const std::string full = slurp(tmp_ / "a.jsonl");
  ASSERT_EQ(sorted_lines(full).size(),
            12u);  // 2 policies x 3 prompts x 2 samples
  ReadStats stats;
  const auto records = read_trajectories(tmp_ / "a.jsonl", /*skip_invalid=*/true, &stats);
  EXPECT_GE(records.size(),
            10u);  // an empty response (eos first) is the only invalid record
  std::set<std::string> policies;
  for (const auto& r : records) policies.insert(r.policy);
  EXPECT_EQ(policies, (std::set<std::string>{"a", "b"}));
  const json first = json::parse(full.substr(0, full.find('\n')));
  EXPECT_EQ(first["category"], "geo");
  EXPECT_EQ(first["prompt"], "the capital of China is");

  // Same command, new output: the same records.
  ASSERT_EQ(run_polar(sample_args("pool.json", "b.jsonl"), tmp_ / "log2", &log), 0) << log;
  EXPECT_EQ(slurp(tmp_ / "b.jsonl"), full);
  // The two policies answer differently.
  std::set<std::string> responses;
  for (const auto& r : records) responses.insert(r.policy + ":" + r.response);
  EXPECT_GT(responses.size(), 8u);

  // An interrupted run: 5 records and half of the 6th. The re-run appends
  // exactly what is missing.
  size_t cut = 0;
  for (int i = 0; i < 5; ++i) cut = full.find('\n', cut) + 1;
  std::ofstream(tmp_ / "c.jsonl", std::ios::binary) << full.substr(0, cut + 20);
  ASSERT_EQ(run_polar(sample_args("pool.json", "c.jsonl"), tmp_ / "log3", &log), 0) << log;
  EXPECT_NE(log.find("unfinished last line"), std::string::npos) << log;
  EXPECT_NE(log.find("5 were there already"), std::string::npos) << log;
  EXPECT_EQ(sorted_lines(slurp(tmp_ / "c.jsonl")), sorted_lines(full));
  ASSERT_EQ(run_polar(sample_args("pool.json", "c.jsonl"), tmp_ / "log4", &log), 0) << log;
  EXPECT_EQ(sorted_lines(slurp(tmp_ / "c.jsonl")), sorted_lines(full));
}

TEST_F(SampleCli, BadPoliciesFailBeforeSampling) {
  fs::create_directories(tmp_ / "broken");
  std::ofstream(tmp_ / "broken/config.json") << R"({"architectures": ["GPT2LMHeadModel"]})";
  write_pool("bad_model.json", json::array({builtin("a", "lm_a"), builtin("broken", "broken")}));
  std::string log;
  EXPECT_EQ(run_polar(sample_args("bad_model.json", "x.jsonl"), tmp_ / "log", &log), 1) << log;
  EXPECT_NE(log.find("policy \"broken\": cannot import"), std::string::npos) << log;
  EXPECT_NE(log.find("GPT2LMHeadModel"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(tmp_ / "x.jsonl"));

  std::string dead;
  {
    testutil::FakeOpenAIServer gone;
    dead = gone.endpoint();
  }
  write_pool(
      "bad_server.json",
      json::array({builtin("a", "lm_a"),
                   {{"name", "srv"}, {"endpoint", dead}, {"model", "m"}, {"max_retries", 0}}}));
  EXPECT_EQ(run_polar(sample_args("bad_server.json", "y.jsonl"), tmp_ / "log", &log), 1) << log;
  EXPECT_NE(log.find("policy \"srv\" (" + dead + "): GET /v1/models failed"), std::string::npos)
      << log;
  EXPECT_FALSE(fs::exists(tmp_ / "y.jsonl"));

  write_pool("no_name.json", json::array({{{"model_dir", "lm_a"}}}));
  EXPECT_EQ(run_polar(sample_args("no_name.json", "z.jsonl"), tmp_ / "log", &log), 1) << log;
  EXPECT_NE(log.find("policies[0]: \"name\" is missing"), std::string::npos) << log;
}

TEST(SamplePrompts, CorpusPrefixesAreShortPrefixesOfTheirTexts) {
  testing::TempDir tmp;
  const Tokenizer tok = Tokenizer::load(testing::tiny_tokenizer_dir());
  const std::vector<std::string> texts = {
      "the capital of China is Beijing, not Shanghai. 14",
      "a good answer to the question says the reward model is good, 21", "policy",
      "question: is the answer good or bad? 35"};
  {
    std::ofstream out(tmp / "corpus.txt");
    for (const auto& t : texts) out << t << "\n\n";
  }
  CorpusPrefixOptions o;
  o.max_prefix_tokens = 6;
  o.seed = 1;
  const auto prompts = corpus_prefix_prompts(tmp / "corpus.txt", tok, o);
  ASSERT_EQ(prompts.size(), texts.size());
  std::set<size_t> lengths;
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(texts[i].rfind(prompts[i].text, 0), 0u) << prompts[i].text;
    const auto n = tok.encode(prompts[i].text).size();
    EXPECT_GE(n, 1u);
    EXPECT_LE(n, 6u);
    lengths.insert(prompts[i].text.size());
  }
  EXPECT_GE(lengths.size(), 2u);  // lengths are drawn, not fixed
  // Same seed, same prompts; the draw of a line does not depend on the others.
  EXPECT_EQ(corpus_prefix_prompts(tmp / "corpus.txt", tok, o)[1].text, prompts[1].text);
}

}  // namespace
}  // namespace polar::sample
