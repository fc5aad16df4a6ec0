// Bounded fuzz campaigns against `polar serve`: malformed bodies and headers, each on a fresh
// connection, must all get a 4xx without hanging or crashing the server, and /health must still
// answer (POLAR_SERVE_FUZZ_CASES, default 300); mutated valid bodies of every endpoint (vLLM,
// SGLang, polar, OpenRLHF) must parse to what they list or be refused with a 4xx naming the key,
// and through the server get the in-process parser's status and the model's rewards.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <map>

#include "fuzz/fuzz_util.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/eval/eval.h"
#include "serve/fuzz_bodies.h"
#include "serve/fuzz_requests.h"
#include "serve/serve_test_util.h"

using namespace polar::testing;

TEST(ServeFuzz, MalformedRequestsGet4xxAndTheServerStaysUp) {
  const char* env = std::getenv("POLAR_SERVE_FUZZ_CASES");
  const int64_t n = env ? std::atoll(env) : 300;
  TempDir tmp;
  FuzzLimits limits;
  ServerProcess server(write_serve_checkpoint(tmp),
                       {"--max-sequences", std::to_string(limits.max_sequences), "--max-length",
                        std::to_string(limits.max_length), "--max-body-bytes",
                        std::to_string(limits.max_body_bytes), "--read-timeout", "1"},
                       tmp);
  std::mt19937_64 rng(2026);
  std::map<std::string, int64_t> by_kind;
  std::map<int, int64_t> by_status;
  int64_t failures = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < n; ++i) {
    FuzzCase c = make_fuzz_case(rng, limits);
    const int status = raw_status(raw_exchange(server.port(), c.bytes));
    by_kind[c.kind]++;
    by_status[status]++;
    if (status < 400 || status > 499) {
      if (++failures <= 5)
        ADD_FAILURE() << "case " << i << " (" << c.kind << ") got status " << status << ":\n"
                      << c.bytes.substr(0, 300);
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string summary;
  for (auto& [k, v] : by_kind) summary += " " + k + "=" + std::to_string(v);
  summary += " | status:";
  for (auto& [k, v] : by_status) summary += " " + std::to_string(k) + "=" + std::to_string(v);
  std::printf(
      "fuzz[serve-malformed-http]: %lld cases, %lld rejected with a 4xx, 0 accepted, %lld "
      "failures (%.1f s;%s)\n",
      static_cast<long long>(n), static_cast<long long>(n - failures),
      static_cast<long long>(failures), seconds, summary.c_str());
  EXPECT_EQ(failures, 0);
  ASSERT_TRUE(server.process().running()) << server.process().output();
  auto health = server.client()->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

namespace {

using polar::fuzz::Mutator;
using polar::fuzz::Tally;

polar::serve::RequestLimits body_limits() {
  polar::serve::RequestLimits l;
  FuzzLimits f;
  l.max_sequences = f.max_sequences;
  l.max_length = f.max_length;
  return l;
}

// A mutated seed: structural damage, byte damage or both (see fuzz_util.h).
std::pair<std::string, std::string> mutated_body(Mutator& m, const std::vector<BodySeed>& seeds) {
  const BodySeed& s = seeds[m.below(seeds.size())];
  return {s.path, m.chance(0.05) ? s.body.dump() : m.mutate(s.body)};
}

// The rewards of a 200 answer, in request order, whatever the endpoint's shape.
std::vector<double> rewards_of(const std::string& path, const nlohmann::json& r) {
  std::vector<double> out;
  if (path == "/pooling") {
    for (const auto& d : r.at("data")) out.push_back(d.at("data").back().at(0).get<double>());
  } else if (path == "/classify" && r.is_object() && r.contains("data")) {  // vLLM's shape
    for (const auto& d : r.at("data")) out.push_back(d.at("probs").at(0).get<double>());
  } else if (path == "/classify") {
    for (const auto& d : r.is_array() ? r : nlohmann::json::array({r}))
      out.push_back(d.at("embedding").at(0).get<double>());
  } else if (path == "/v1/embeddings") {
    for (const auto& d : r.at("data")) out.push_back(d.at("embedding").at(0).get<double>());
  } else if (path == "/score") {
    if (r.contains("rewards")) {
      for (const auto& v : r["rewards"]) out.push_back(v.get<double>());
    } else {
      for (const auto& g : r.at("data"))
        for (const auto& v : g.at("rewards")) out.push_back(v.get<double>());
    }
  } else {
    for (const auto& v : r.at("rewards")) out.push_back(v.get<double>());
  }
  return out;
}

}  // namespace

// The parsers on mutated valid bodies of every endpoint, in process (fast, so the campaign runs
// thousands): a parse must hold what the body lists; a refusal must be an HttpError 4xx (any
// other exception would be the server's 500 or 503) naming what is wrong.
TEST(ServeFuzz, MutatedBodiesParseOrGet4xx) {
  const polar::Tokenizer tok = polar::Tokenizer::load(tiny_tokenizer_dir());
  const auto seeds = valid_bodies(tok);
  const auto limits = body_limits();
  Mutator m(polar::fuzz::seed() + 31);
  Tally t;
  const int64_t n = polar::fuzz::env_count("POLAR_FUZZ_CASES", 80) * 4;
  for (int64_t i = 0; i < n; ++i) {
    const auto [path, text] = mutated_body(m, seeds);
    ++t.cases;
    try {
      const auto req = parse_request(path, text, tok, limits);
      ++t.accepted;
      const std::string problem = check_parsed(path, text, req, tok, limits);
      if (!problem.empty()) t.fail(problem, path + " " + text.substr(0, 300));
    } catch (const polar::serve::HttpError& e) {
      ++t.rejected;
      const std::string problem = check_refusal(e.status(), e.what());
      if (!problem.empty()) t.fail(problem, path + " " + text.substr(0, 300));
    } catch (const std::exception& e) {
      t.fail("not an HttpError", path + " " + text.substr(0, 300) + ": " + e.what());
    }
  }
  std::cout << t.summary("serve-bodies") << std::endl;
  for (const auto& e : t.examples) ADD_FAILURE() << e;
  EXPECT_EQ(t.failures, 0);
  EXPECT_GT(t.accepted, 0);
  EXPECT_GT(t.rejected, 0);
}

// The same bodies through a real `polar serve`: the status is the in-process parser's (200 or
// its 4xx), and a 200 carries the rewards the model gives the parsed sequences in process
// (fp32 CPU; 1e-4 covers the server's other batching). POLAR_SERVE_FUZZ_BODIES sets the count.
TEST(ServeFuzz, MutatedBodiesThroughTheServerAreScoredRightOrRefused) {
  const char* env = std::getenv("POLAR_SERVE_FUZZ_BODIES");
  const int64_t n = env ? std::atoll(env) : 60;
  TempDir tmp;
  const std::string ckpt = write_serve_checkpoint(tmp);
  polar::LoadedModel lm = polar::load_model(ckpt, torch::kCPU);
  const auto seeds = valid_bodies(lm.tokenizer);
  const auto limits = body_limits();
  ServerProcess server(ckpt,
                       {"--max-sequences", std::to_string(limits.max_sequences), "--max-length",
                        std::to_string(limits.max_length)},
                       tmp);
  auto client = server.client();
  Mutator m(polar::fuzz::seed() + 32);
  Tally t;
  for (int64_t i = 0; i < n; ++i) {
    const auto [path, text] = mutated_body(m, seeds);
    const std::string what = path + " " + text.substr(0, 300);
    ++t.cases;
    int want = 200;
    std::vector<float> expected;
    try {
      const auto req = parse_request(path, text, lm.tokenizer, limits);
      expected = polar::reward_groups(lm, req.groups, polar::ScoreOptions{});
    } catch (const polar::serve::HttpError& e) {
      want = e.status();
    }
    auto res = client->Post(path, text, "application/json");
    if (!res) {
      t.fail("no answer", what);
      continue;
    }
    if (res->status != want) {
      t.fail("status " + std::to_string(res->status) + ", the parser says " + std::to_string(want),
             what + " -> " + res->body.substr(0, 300));
      continue;
    }
    const auto body = nlohmann::json::parse(res->body, nullptr, false);
    if (want != 200) {
      ++t.rejected;
      const bool has = body.is_object() && body.contains("error") && body["error"].is_object() &&
                       body["error"].contains("message") && body["error"]["message"].is_string();
      const std::string message = has ? body["error"]["message"].get<std::string>() : "";
      const std::string problem = check_refusal(res->status, message);
      if (!problem.empty()) t.fail(problem, what);
      continue;
    }
    ++t.accepted;
    std::vector<double> got;
    try {
      got = rewards_of(path, body);
    } catch (const std::exception& e) {
      t.fail("a 200 answer without its rewards", what + " -> " + res->body.substr(0, 300));
      continue;
    }
    if (got.size() != expected.size()) {
      t.fail("reward count", what);
      continue;
    }
    for (size_t k = 0; k < got.size(); ++k)
      if (!(std::abs(got[k] - expected[k]) <= 1e-4)) {
        t.fail("wrong reward",
               what + ": " + std::to_string(got[k]) + " vs " + std::to_string(expected[k]));
        break;
      }
  }
  std::cout << t.summary("serve-bodies-http") << std::endl;
  for (const auto& e : t.examples) ADD_FAILURE() << e;
  EXPECT_EQ(t.failures, 0);
  EXPECT_GT(t.accepted, 0);
  EXPECT_GT(t.rejected, 0);
  ASSERT_TRUE(server.process().running()) << server.process().output();
}
