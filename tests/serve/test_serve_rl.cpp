// What RL frameworks need of `polar serve`: a request of any size in one call (split into chunks
// that stream through the batcher beside small requests), queued work dropped when its client goes
// away, OpenRLHF's /get_reward, vLLM's error body, and rewards normalised with the mean and std
// `polar eval --save-stats` stored.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <future>
#include <regex>
#include <thread>

#include "polar/common/error.h"
#include "polar/serve/batcher.h"
#include "polar/serve/protocol.h"
#include "serve/serve_test_util.h"

using nlohmann::json;
using namespace polar;
using namespace polar::testing;

namespace {

std::vector<EncodedGroup> numbered_groups(const Tokenizer& tok, int n) {
  std::vector<EncodedGroup> groups;
  for (int i = 0; i < n; ++i) {
    groups.push_back(*encode_group_text(tok, TemplateKind::Finetune, "what is " + std::to_string(i),
                                        "the sea", {"a tree " + std::to_string(i * 7)},
                                        TemplateLimits{}));
  }
  return groups;
}

// A Prometheus counter or gauge of the server's /metrics.
double metric(httplib::Client& c, const std::string& name) {
  auto res = c.Get("/metrics");
  if (!res) return -1;
  std::smatch m;
  if (!std::regex_search(res->body, m, std::regex("\n" + name + " ([0-9.e+-]+)"))) return -1;
  return std::stod(m[1]);
}

}  // namespace

TEST(ServeBatcher, LargeRequestStreamsInChunksBesideSmallOnes) {
  TempDir tmp;
  LoadedModel lm = load_model(write_serve_checkpoint(tmp), torch::kCPU);
  const auto big = numbered_groups(lm.tokenizer, 240);
  const std::vector<float> alone = reward_groups(lm, big, ScoreOptions{});
  const int64_t group_tokens =
      static_cast<int64_t>(big[0].prefix.size() + big[0].candidates[0].size());
  serve::BatcherOptions bo;
  bo.max_wait = std::chrono::milliseconds(1);
  bo.batch_tokens = 16 * group_tokens;  // ~15 batches for the big request
  serve::DynamicBatcher batcher(lm, bo);
  auto big_future = batcher.submit(big);
  auto small_future = batcher.submit({big[3]});
  // The small request is answered while most of the big one still waits.
  ASSERT_EQ(small_future.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_GT(batcher.stats().queued_sequences, 100);
  EXPECT_NEAR(small_future.get()[0], alone[3], 1e-5);
  const std::vector<float> rewards = big_future.get();
  ASSERT_EQ(rewards.size(), alone.size());
  for (size_t i = 0; i < alone.size(); ++i) EXPECT_NEAR(rewards[i], alone[i], 1e-5) << i;
  EXPECT_GE(batcher.stats().batches, 15);
}

TEST(ServeBatcher, CancelledRequestsHaveTheirQueuedChunksDropped) {
  TempDir tmp;
  LoadedModel lm = load_model(write_serve_checkpoint(tmp), torch::kCPU);
  const auto big = numbered_groups(lm.tokenizer, 400);
  serve::BatcherOptions bo;
  bo.max_wait = std::chrono::milliseconds(1);
  bo.batch_tokens = 8 * static_cast<int64_t>(big[0].prefix.size() + big[0].candidates[0].size());
  serve::DynamicBatcher batcher(lm, bo);
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  auto future = batcher.submit(big, cancel);
  while (batcher.stats().batches < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  cancel->store(true);
  batcher.wake();
  EXPECT_THROW(future.get(), Error);
  const auto s = batcher.stats();
  EXPECT_EQ(s.queued_sequences, 0);
  EXPECT_GT(s.cancelled_sequences, 200);
  EXPECT_EQ(s.sequences + s.cancelled_sequences, 400);
  // The batcher serves the next request as usual.
  EXPECT_EQ(batcher.submit({big[0]}).get().size(), 1u);
}

TEST(ServeProtocol, OpenRlhfQueriesLoseTheirChatTemplate) {
  EXPECT_EQ(serve::strip_chat_template(
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is "
                "2+2?<|im_end|>\n<|im_start|>assistant\n"),
            "Be brief.\nWhat is 2+2?");
  EXPECT_EQ(serve::strip_chat_template("4<|im_end|>\n<|endoftext|>"), "4");
  EXPECT_EQ(
      serve::strip_chat_template("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi"
                                 "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
      "Hi");
  EXPECT_EQ(serve::strip_chat_template("plain text"), "plain text");
  const json e = serve::error_body(400, "bad");
  EXPECT_EQ(e["error"]["message"], "bad");
  EXPECT_EQ(e["error"]["type"], "BadRequestError");
  EXPECT_TRUE(e["error"]["param"].is_null());
  EXPECT_EQ(e["error"]["code"], 400);
}

class ServeRl : public ::testing::Test {
 protected:
  void SetUp() override { ckpt_ = write_serve_checkpoint(tmp_); }
  TempDir tmp_;
  std::string ckpt_;
};

TEST_F(ServeRl, TenThousandSequencesInOneCallEqualPolarScore) {
  std::vector<ScoreInput> inputs;
  for (int i = 0; i < 10000; ++i) {
    inputs.push_back({"what is " + std::to_string(i % 97),
                      "the answer is " + std::to_string(i % 89), "answer " + std::to_string(i)});
  }
  const auto expected = polar_score(ckpt_, inputs, tmp_);
  ServerProcess server(ckpt_, {}, tmp_);
  auto c = server.client(600);
  // POLAR's client posts every formatted string of a batch in one /pooling request.
  json texts = json::array();
  for (const auto& in : inputs) texts.push_back(client_format(in));
  auto res = c->Post("/pooling", json{{"input", texts}}.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body.substr(0, 300);
  const json body = json::parse(res->body);
  ASSERT_EQ(body["data"].size(), 10000u);
  double worst = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    worst =
        std::max(worst, std::abs(body["data"][i]["data"].back()[0].get<double>() - expected[i]));
  }
  EXPECT_LT(worst, 1e-5);  // fp32, other batch composition: rounding only
}

TEST_F(ServeRl, AClientThatDisconnectsLeavesNoWorkRunning) {
  ServerProcess server(ckpt_, {"--batch-tokens", "2048"}, tmp_);
  json texts = json::array();
  for (int i = 0; i < 50000; ++i)
    texts.push_back(client_format({"what is " + std::to_string(i), "the sea", "a tree"}));
  {
    auto impatient = server.client(1);  // gives up after a second, as a timing-out client does
    auto res = impatient->Post("/pooling", json{{"input", texts}}.dump(), "application/json");
    EXPECT_FALSE(res) << "a 50000-sequence request was answered within a second";
  }
  auto c = server.client();
  double scored = -1;
  for (int i = 0; i < 200; ++i) {  // the dropped work shows within a few seconds
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (metric(*c, "polar_cancelled_sequences_total") > 0 &&
        metric(*c, "polar_queue_sequences") == 0)
      break;
  }
  EXPECT_GT(metric(*c, "polar_cancelled_sequences_total"), 0);
  EXPECT_EQ(metric(*c, "polar_queue_sequences"), 0);
  scored = metric(*c, "polar_sequences_total");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(metric(*c, "polar_sequences_total"), scored) << "the model still works for it";
  EXPECT_LT(scored, 50000);
}

TEST_F(ServeRl, OpenRlhfGetRewardEqualsPolarScoreOfTheDetemplatedText) {
  // OpenRLHF's remote reward request (openrlhf/utils/remote_rm_utils.py: requests.post(url,
  // json={"query": queries, "prompts": prompts, "labels": labels}), reading "rewards"), with
  // Qwen-style chat templates kept in queries and prompts.
  const std::vector<ScoreInput> plain = {{"what is 12 and 7", "the answer is 19", "answer 19"},
                                         {"how many trees", "many trees", "a sea of trees"}};
  json queries = json::array(), prompts = json::array(), labels = json::array();
  for (const auto& in : plain) {
    const std::string prompt =
        "<|im_start|>user\n" + in.prompt + "<|im_end|>\n<|im_start|>assistant\n";
    prompts.push_back(prompt);
    queries.push_back(prompt + in.output + "<|im_end|>\n<|endoftext|>");
    labels.push_back(in.reference);
  }
  const auto expected = polar_score(ckpt_, plain, tmp_);
  ServerProcess server(ckpt_, {}, tmp_);
  auto c = server.client();
  auto res = c->Post("/get_reward",
                     json{{"query", queries}, {"prompts", prompts}, {"labels", labels}}.dump(),
                     "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json body = json::parse(res->body);
  ASSERT_EQ(body["rewards"].size(), 2u);
  EXPECT_EQ(body["scores"], body["rewards"]);
  EXPECT_TRUE(body["extra_logs"].is_object());
  for (size_t i = 0; i < plain.size(); ++i)
    EXPECT_NEAR(body["rewards"][i].get<double>(), expected[i], 1e-5);
  // Mismatched lists and base64 embeddings are refused with vLLM's error body.
  res = c->Post("/get_reward",
                json{{"query", queries}, {"prompts", prompts}, {"labels", {"x"}}}.dump(),
                "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(json::parse(res->body)["error"]["message"].get<std::string>().find("labels"),
            std::string::npos);
  res = c->Post("/pooling",
                json{{"input", {client_format(plain[0])}}, {"encoding_format", "base64"}}.dump(),
                "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(json::parse(res->body)["error"]["message"].get<std::string>().find("encoding_format"),
            std::string::npos);
}

TEST_F(ServeRl, NormalisedRewardsHaveMeanZeroAndStdOneOnTheEvalSplit) {
  const std::string eval = tmp_ / "eval.jsonl", scoring = tmp_ / "scoring.jsonl";
  {
    std::ofstream e(eval), s(scoring);
    for (int i = 0; i < 12; ++i) {
      const json r = {{"prompt", "what is " + std::to_string(i)},
                      {"reference", "the sea " + std::to_string(i % 5)},
                      {"chosen", "a tree " + std::to_string(i * 3)},
                      {"rejected", "no " + std::to_string(i)}};
      e << r.dump() << "\n";
      for (const char* k : {"chosen", "rejected"})
        s << json{{"prompt", r["prompt"]}, {"reference", r["reference"]}, {"output", r[k]}}.dump()
          << "\n";
    }
  }
  std::string log;
  const std::string bin = std::getenv("POLAR_BIN") ? std::getenv("POLAR_BIN") : polar_binary();
  ASSERT_EQ(std::system((bin + " eval --checkpoint " + ckpt_ + " --data " + eval +
                         " --device cpu --save-stats > " + (tmp_ / "eval.log") + " 2>&1")
                            .c_str()),
            0);
  ASSERT_EQ(std::system((bin + " score --checkpoint " + ckpt_ + " --input " + scoring +
                         " --device cpu --normalize --output " + (tmp_ / "norm.jsonl") + " > " +
                         (tmp_ / "score.log") + " 2>&1")
                            .c_str()),
            0);
  std::ifstream in(tmp_ / "norm.jsonl");
  double sum = 0, squares = 0;
  int n = 0;
  for (std::string line; std::getline(in, line); ++n) {
    const double r = json::parse(line)["reward"];
    sum += r;
    squares += r * r;
  }
  ASSERT_EQ(n, 24);
  EXPECT_NEAR(sum / n, 0.0, 1e-5);
  EXPECT_NEAR(std::sqrt(squares / n - (sum / n) * (sum / n)), 1.0, 1e-5);
  // The server applies the same statistics.
  ServerProcess server(ckpt_, {"--normalize"}, tmp_);
  auto c = server.client();
  auto res = c->Post(
      "/score",
      json{{"prompt", "what is 0"}, {"reference", "the sea 0"}, {"output", "a tree 0"}}.dump(),
      "application/json");
  ASSERT_TRUE(res);
  std::ifstream again(tmp_ / "norm.jsonl");
  std::string first;
  std::getline(again, first);
  EXPECT_NEAR(json::parse(res->body)["rewards"][0].get<double>(),
              json::parse(first)["reward"].get<double>(), 1e-5);
}
