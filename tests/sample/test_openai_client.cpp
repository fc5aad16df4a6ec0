// The server backend against a local OpenAI-compatible test server on
// 127.0.0.1: request and response shapes of /v1/completions and
// /v1/chat/completions, retries of transient errors, immediate failure on
// client errors and malformed bodies, timeouts, the pre-flight check, and a
// server that dies midway through a run (records kept, the re-run completes the
// output).
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/tiny_data.h"
#include "openai_test_server.h"
#include "polar/common/error.h"
#include "polar/data/builder.h"
#include "polar/sample/openai_client.h"
#include "polar/sample/sampler.h"

namespace polar::sample {
namespace {

using nlohmann::json;
using testutil::FakeOpenAIServer;

ServerSpec spec_for(const FakeOpenAIServer& server, bool chat = false) {
  ServerSpec s;
  s.endpoint = server.endpoint();
  s.model = "tiny";
  s.chat = chat;
  s.timeout_s = 5;
  s.max_retries = 3;
  s.retry_backoff_s = 0.01;
  return s;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(SampleServer, CompletionRequestAndResponseShapes) {
  FakeOpenAIServer server;
  SamplingParams p;
  p.max_new_tokens = 12;
  p.stop = {"\n\n"};
  const OpenAIClient client("p", spec_for(server));
  client.check();
  const Completion c = client.complete("What is 2+2?", p, 77);
  EXPECT_EQ(c.text, "What is 2+2?|77");
  EXPECT_EQ(c.finish, "stop");
  EXPECT_EQ(c.tokens, 7);
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0]["path"], "/v1/completions");
  const json& b = reqs[0]["body"];
  EXPECT_EQ(b["model"], "tiny");
  EXPECT_EQ(b["prompt"], "What is 2+2?");
  EXPECT_EQ(b["max_tokens"], 12);
  EXPECT_EQ(b["temperature"], 1.0);
  EXPECT_EQ(b["top_p"], 0.9);
  EXPECT_EQ(b["top_k"], 50);
  EXPECT_EQ(b["min_p"], 0.0);  // sent, so the server does not fill it from generation_config
  EXPECT_EQ(b["repetition_penalty"], 1.0);
  EXPECT_EQ(b["seed"], 77);
  EXPECT_EQ(b["stop"], json({"\n\n"}));
  EXPECT_FALSE(b.contains("messages"));
}

TEST(SampleServer, ChatRequestAndResponseShapes) {
  FakeOpenAIServer server;
  const OpenAIClient client("p", spec_for(server, /*chat=*/true));
  SamplingParams p;
  p.top_k = 0;
  const Completion c = client.complete("hello", p, 5);
  EXPECT_EQ(c.text, "hello|5");
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0]["path"], "/v1/chat/completions");
  EXPECT_EQ(reqs[0]["body"]["messages"], json::parse(R"([{"role": "user", "content": "hello"}])"));
  EXPECT_EQ(reqs[0]["body"]["top_k"], -1);  // off
  EXPECT_FALSE(reqs[0]["body"].contains("prompt"));
  EXPECT_FALSE(reqs[0]["body"].contains("stop"));
}

TEST(SampleServer, RetriesTransientErrorsThenSucceeds) {
  FakeOpenAIServer server;
  server.fail_next = 2;
  const OpenAIClient client("p", spec_for(server));
  EXPECT_EQ(client.complete("x", SamplingParams{}, 1).text, "x|1");
  EXPECT_EQ(server.requests().size(), 3u);
}

TEST(SampleServer, GivesUpAfterMaxRetries) {
  FakeOpenAIServer server;
  server.fail_next = 100;
  ServerSpec s = spec_for(server);
  s.max_retries = 2;
  const std::string err =
      error_of([&] { OpenAIClient("p", s).complete("x", SamplingParams{}, 1); });
  EXPECT_NE(err.find("policy \"p\""), std::string::npos) << err;
  EXPECT_NE(err.find("after 3 tries"), std::string::npos) << err;
  EXPECT_NE(err.find("HTTP 503"), std::string::npos) << err;
  EXPECT_EQ(server.requests().size(), 3u);
}

TEST(SampleServer, ClientErrorsAndMalformedBodiesFailAtOnce) {
  FakeOpenAIServer server;
  ServerSpec s = spec_for(server);
  s.model = "missing";
  std::string err = error_of([&] { OpenAIClient("p", s).complete("x", SamplingParams{}, 1); });
  EXPECT_NE(err.find("HTTP 404"), std::string::npos) << err;
  EXPECT_NE(err.find("does not exist"), std::string::npos) << err;
  EXPECT_EQ(server.requests().size(), 1u);
  server.malformed = true;
  err = error_of([&] { OpenAIClient("p", spec_for(server)).complete("x", SamplingParams{}, 1); });
  EXPECT_NE(err.find("no \"choices\""), std::string::npos) << err;
  EXPECT_EQ(server.requests().size(), 2u);
}

TEST(SampleServer, TimesOut) {
  FakeOpenAIServer server;
  server.stall_ms = 1500;
  ServerSpec s = spec_for(server);
  s.timeout_s = 0.2;
  s.max_retries = 0;
  const auto start = std::chrono::steady_clock::now();
  const std::string err =
      error_of([&] { OpenAIClient("p", s).complete("x", SamplingParams{}, 1); });
  EXPECT_NE(err.find("after 1 tries"), std::string::npos) << err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1200));
}

TEST(SampleServer, CheckFindsUnreachableEndpointsAndUnservedModels) {
  std::string dead;
  {
    FakeOpenAIServer gone;
    dead = gone.endpoint();
  }
  ServerSpec s;
  s.endpoint = dead;
  s.model = "tiny";
  s.max_retries = 1;
  s.retry_backoff_s = 0.01;
  std::string err = error_of([&] { OpenAIClient("p", s).check(); });
  EXPECT_NE(err.find(dead), std::string::npos) << err;
  EXPECT_NE(err.find("GET /v1/models failed after 2 tries"), std::string::npos) << err;

  FakeOpenAIServer server({"a", "b"});
  err = error_of([&] { OpenAIClient("p", spec_for(server)).check(); });
  EXPECT_NE(err.find("does not serve model \"tiny\" (it serves: a, b)"), std::string::npos) << err;
}

TEST(SampleServer, ServerDyingMidwayKeepsRecordsAndTheRerunCompletes) {
  testing::TempDir tmp;
  FakeOpenAIServer server;
  PolicySpec policy;
  policy.name = "served";
  policy.is_server = true;
  policy.server = spec_for(server);
  policy.server.concurrency = 1;
  policy.server.max_retries = 1;
  SampleRunOptions o;
  o.policies = {policy};
  for (const char* p : {"p0", "p1", "p2", "p3"}) o.prompts.push_back({p, "cat"});
  o.scheme = SampleScheme::All;
  o.samples_per_prompt = 3;
  o.output = tmp / "traj.jsonl";
  o.progress = false;
  server.die_after = 5;
  const std::string err = error_of([&] { run_sampling(o); });
  EXPECT_NE(err.find("HTTP 500"), std::string::npos) << err;
  EXPECT_NE(err.find("5 records written"), std::string::npos) << err;
  const auto partial = lines_of(o.output);
  ASSERT_EQ(partial.size(), 5u);

  server.die_after = -1;
  const auto stats = run_sampling(o);
  EXPECT_EQ(stats.existing, 5);
  EXPECT_EQ(stats.written, 7);
  const auto full = lines_of(o.output);
  ASSERT_EQ(full.size(), 12u);
  EXPECT_TRUE(std::equal(partial.begin(), partial.end(), full.begin()));
  std::set<std::pair<std::string, int64_t>> keys;
  for (const auto& line : full) {
    const json r = json::parse(line);
    EXPECT_EQ(r["policy"], "served");
    EXPECT_EQ(r["category"], "cat");
    const std::string prompt = r["prompt"];
    const int64_t s = r["sample"];
    EXPECT_EQ(r["prompt_id"], prompt_id(prompt));
    const auto hash = static_cast<int64_t>(prompt_hash(prompt));
    EXPECT_EQ(
        r["response"],
        prompt + "|" + std::to_string(sample_seed(0, "served", hash, s) & 0x7fffffffffffffffull));
    keys.emplace(prompt, s);
  }
  EXPECT_EQ(keys.size(), 12u);
  EXPECT_EQ(run_sampling(o).written, 0);  // nothing left
}

}  // namespace
}  // namespace polar::sample
