// `polar serve` as a real process on 127.0.0.1: the exact requests POLAR's RewardModelClient sends
// for each server type, parsed the way the client parses them, equal `polar score` on the same
// records; the native /score endpoint; health, models and metrics; limits; SIGTERM drains.
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>
#include <future>
#include <thread>

#include "polar/serve/formatted.h"
#include "serve/serve_test_util.h"

using nlohmann::json;
using namespace polar::testing;

namespace {

std::vector<ScoreInput> sample_inputs() {
  return {{"what is 12 and 7", "the answer is 19", "answer 19"},
          {"what is 12 and 7", "the answer is 19", "the answer is 21"},
          {"how many trees", "many trees", "a sea of trees and sky"},
          {"write about the sea", "the sea is a sky", "yes"},
          {"count the policy", "reward model", "the number 42"}};
}

std::vector<std::string> formatted(const std::vector<ScoreInput>& inputs) {
  std::vector<std::string> out;
  for (const auto& in : inputs) out.push_back(client_format(in));
  return out;
}

json post(httplib::Client& c, const std::string& path, const json& body, int expect_status = 200) {
  auto res = c.Post(path, body.dump(), "application/json");
  EXPECT_TRUE(res) << path << ": no response";
  if (!res) return json();
  EXPECT_EQ(res->status, expect_status) << path << ": " << res->body;
  return json::parse(res->body);
}

// fp32 rewards of the same sequences packed into different batches agree to rounding.
constexpr double kTol = 1e-5;

class ServeHttp : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    ckpt_ = new std::string(write_serve_checkpoint(*tmp_));
    expected_ = new std::vector<double>(polar_score(*ckpt_, sample_inputs(), *tmp_));
  }
  static void TearDownTestSuite() {
    delete expected_;
    delete ckpt_;
    delete tmp_;
  }
  static TempDir* tmp_;
  static std::string* ckpt_;
  static std::vector<double>* expected_;
};
TempDir* ServeHttp::tmp_ = nullptr;
std::string* ServeHttp::ckpt_ = nullptr;
std::vector<double>* ServeHttp::expected_ = nullptr;

}  // namespace

TEST_F(ServeHttp, ClientRequestsForEveryServerTypeEqualPolarScore) {
  ASSERT_EQ(expected_->size(), sample_inputs().size());
  const auto texts = formatted(sample_inputs());
  {
    ServerProcess vllm(*ckpt_, {}, *tmp_);
    auto c = vllm.client();
    // vLLM and lmdeploy clients post {"input": [...]} (no "model"); SGLang posts {"model", "text"}.
    json v = post(*c, "/pooling", {{"input", texts}});
    ASSERT_EQ(v["data"].size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i)
      EXPECT_NEAR(v["data"][i]["data"].back()[0].get<double>(), (*expected_)[i], kTol);
    EXPECT_EQ(v["object"], "list");
    EXPECT_EQ(v["model"], "ckpt");
    json s = post(*c, "/classify", {{"model", "POLAR-7B"}, {"text", texts}});
    ASSERT_EQ(s.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i)
      EXPECT_NEAR(s[i]["embedding"][0].get<double>(), (*expected_)[i], kTol);
    // Token ids (as RL frameworks send them) score the same as the string.
    auto tok = polar::Tokenizer::load(*ckpt_ + "/tokenizer");
    json ids = polar::serve::tokenize_formatted(tok, texts[2]);
    json t = post(*c, "/pooling", {{"input", json::array({ids})}});
    EXPECT_NEAR(t["data"][0]["data"].back()[0].get<double>(), (*expected_)[2], kTol);
    post(*c, "/pooling", {{"input", json::array({json::array({1, 2})})}},
         400);  // no reward token at the end
  }
  ServerProcess lmdeploy(*ckpt_, {"--api", "lmdeploy", "--served-model-name", "polar-rm"}, *tmp_);
  auto c = lmdeploy.client();
  json l = post(*c, "/pooling", {{"input", texts}});
  for (size_t i = 0; i < texts.size(); ++i)
    EXPECT_NEAR(l["data"][i]["data"].get<double>(), (*expected_)[i], kTol);
  EXPECT_EQ(l["model"], "polar-rm");
}

// verl's reward loop (verl/experimental/reward_loop, a discriminative reward model served by its
// rollout engine) posts one text per request: with the vllm engine {"model", "input",
// "use_activation": false} to /classify, reading data[0].probs[-1]; with the sglang engine
// {"model", "input"} to /v1/embeddings, reading data[0].embedding[-1] (the shapes of verl's own
// tests of RewardLoopWorker.compute_score_disrm).
TEST_F(ServeHttp, VerlRewardLoopRequestsEqualPolarScore) {
  const auto texts = formatted(sample_inputs());
  ServerProcess server(*ckpt_, {}, *tmp_);
  auto c = server.client();
  for (size_t i = 0; i < texts.size(); ++i) {
    json v = post(*c, "/classify",
                  {{"model", "/models/polar"}, {"input", texts[i]}, {"use_activation", false}});
    EXPECT_NEAR(v["data"][0]["probs"].back().get<double>(), (*expected_)[i], kTol);
    EXPECT_EQ(v["object"], "list");
    json e = post(*c, "/v1/embeddings", {{"model", "/models/polar"}, {"input", texts[i]}});
    EXPECT_NEAR(e["data"][0]["embedding"].back().get<double>(), (*expected_)[i], kTol);
    EXPECT_EQ(e["data"][0]["object"], "embedding");
  }
  json all = post(*c, "/v1/embeddings", {{"input", texts}});
  ASSERT_EQ(all["data"].size(), texts.size());
  EXPECT_NEAR(all["data"][4]["embedding"][0].get<double>(), (*expected_)[4], kTol);
  // A sigmoid would squash the reward; a text without the reward token has no reward.
  json a = post(*c, "/classify", {{"input", texts[0]}, {"use_activation", true}}, 400);
  EXPECT_NE(a["error"]["message"].get<std::string>().find("use_activation"), std::string::npos);
  post(*c, "/v1/embeddings", {{"input", "a chat-templated text, no reference"}}, 400);
  post(*c, "/v1/embeddings", {{"input", texts[0]}, {"dimensions", 8}}, 400);
}

TEST_F(ServeHttp, NativeScoreBatchesOutputsOfOnePromptAndMatchesPolarScore) {
  ServerProcess server(*ckpt_, {}, *tmp_);
  auto c = server.client();
  const auto in = sample_inputs();
  // Records 0 and 1 share prompt and reference: one group with two outputs; messages lists work
  // too.
  json group{
      {"prompt", json::array({json{{"role", "user"}, {"content", in[0].prompt}}})},
      {"reference", json::array({json{{"role", "assistant"}, {"content", in[0].reference}}})},
      {"outputs", {in[0].output, in[1].output}}};
  json one = post(*c, "/score", group);
  ASSERT_EQ(one["rewards"].size(), 2u);
  EXPECT_NEAR(one["rewards"][0].get<double>(), (*expected_)[0], kTol);
  EXPECT_NEAR(one["rewards"][1].get<double>(), (*expected_)[1], kTol);
  json list = json::array();
  for (size_t i = 2; i < in.size(); ++i)
    list.push_back(
        {{"prompt", in[i].prompt}, {"reference", in[i].reference}, {"output", in[i].output}});
  json many = post(*c, "/score", list);
  for (size_t i = 2; i < in.size(); ++i)
    EXPECT_NEAR(many["data"][i - 2]["rewards"][0].get<double>(), (*expected_)[i], kTol);
  EXPECT_GT(many["usage"]["prompt_tokens"].get<int64_t>(), 0);
}

TEST_F(ServeHttp, ConcurrentClientsGetTheirOwnRewards) {
  ServerProcess server(*ckpt_, {"--max-wait-ms", "20"}, *tmp_);
  const auto texts = formatted(sample_inputs());
  std::vector<std::future<bool>> clients;
  for (int k = 0; k < 6; ++k) {
    clients.push_back(std::async(std::launch::async, [&, k] {
      auto c = server.client();
      const size_t i = static_cast<size_t>(k) % texts.size();
      for (int rep = 0; rep < 5; ++rep) {
        auto res = c->Post("/pooling", json{{"input", {texts[i]}}}.dump(), "application/json");
        if (!res || res->status != 200) return false;
        double r = json::parse(res->body)["data"][0]["data"].back()[0].get<double>();
        if (std::abs(r - (*expected_)[i]) > kTol) return false;
      }
      return true;
    }));
  }
  for (auto& f : clients) EXPECT_TRUE(f.get());
  auto c = server.client();
  // Counters are updated just after each answer is sent: poll briefly for the last ones.
  std::string metrics;
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto m = c->Get("/metrics");
    ASSERT_TRUE(m);
    metrics = m->body;
    if (metrics.find("polar_sequences_total 30") != std::string::npos &&
        metrics.find("code=\"200\"} 30") != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(metrics.find("polar_requests_total{path=\"/pooling\",code=\"200\"} 30"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("polar_sequences_total 30"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("polar_request_duration_seconds_count 30"), std::string::npos) << metrics;
}

TEST_F(ServeHttp, HealthModelsErrorsAndLimits) {
  ServerProcess server(
      *ckpt_, {"--max-sequences", "4", "--max-length", "64", "--max-body-bytes", "4096"}, *tmp_);
  auto c = server.client();
  auto h = c->Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto models = c->Get("/v1/models");
  ASSERT_TRUE(models);
  json mj = json::parse(models->body);
  EXPECT_EQ(mj["data"][0]["id"], "ckpt");
  EXPECT_EQ(mj["data"][0]["max_model_len"], 64);
  auto status_and_message = [&](const std::string& path, const std::string& body) {
    auto res = c->Post(path, body, "application/json");
    EXPECT_TRUE(res) << path;
    if (!res) return std::pair<int, std::string>{-1, ""};
    return std::pair<int, std::string>{res->status,
                                       json::parse(res->body)["message"].get<std::string>()};
  };
  const std::string ok = client_format(sample_inputs()[0]);
  auto [s1, m1] = status_and_message("/pooling", json{{"input", {ok, ok, ok, ok, ok}}}.dump());
  EXPECT_EQ(s1, 400);
  EXPECT_NE(m1.find("--max-sequences"), std::string::npos) << m1;
  auto [s2, m2] = status_and_message(
      "/pooling", json{{"input", {client_format({std::string(80, '~'), "b", "c"})}}}.dump());
  EXPECT_EQ(s2, 400);
  EXPECT_NE(m2.find("--max-length"), std::string::npos) << m2;
  auto [s3, m3] = status_and_message("/pooling", json{{"input", {std::string(5000, 'a')}}}.dump());
  EXPECT_EQ(s3, 413);
  EXPECT_NE(m3.find("--max-body-bytes"), std::string::npos) << m3;
  auto [s4, m4] = status_and_message("/classify", "{\"text\": [\"a\"");
  EXPECT_EQ(s4, 400);
  EXPECT_NE(m4.find("malformed JSON"), std::string::npos) << m4;
  auto [s5, m5] = status_and_message("/pooling", json{{"input", {"no reward token here"}}}.dump());
  EXPECT_EQ(s5, 400);
  EXPECT_NE(m5.find("does not end with the reward token"), std::string::npos) << m5;
  auto [s6, m6] = status_and_message("/v2/nothing", "{}");
  EXPECT_EQ(s6, 404);
  EXPECT_NE(m6.find("no endpoint POST /v2/nothing"), std::string::npos) << m6;
}

TEST_F(ServeHttp, SigtermDrainsRequestsInFlightAndExitsZero) {
  // A long wait keeps the request queued in the batcher while SIGTERM arrives.
  ServerProcess server(*ckpt_, {"--max-wait-ms", "800"}, *tmp_);
  const auto texts = formatted(sample_inputs());
  auto in_flight = std::async(std::launch::async, [&] {
    auto c = server.client();
    return c->Post("/pooling", json{{"input", texts}}.dump(), "application/json");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(::kill(server.process().pid(), SIGTERM), 0);
  auto res = in_flight.get();
  ASSERT_TRUE(res) << "the request in flight got no answer";
  EXPECT_EQ(res->status, 200);
  EXPECT_NEAR(json::parse(res->body)["data"][0]["data"].back()[0].get<double>(), (*expected_)[0],
              kTol);
  EXPECT_EQ(server.process().wait(std::chrono::seconds(30)), 0) << server.process().output();
}
