// The server's request parsing and response shapes, without the network: formatted strings give
// the ids of POLAR's template, and every bad body is a 4xx whose message names what is wrong.
#include <gtest/gtest.h>

#include "common/tiny_data.h"
#include "polar/serve/formatted.h"
#include "polar/serve/metrics.h"
#include "polar/serve/protocol.h"

using nlohmann::json;
using namespace polar::serve;

namespace {

const polar::Tokenizer& tok() {
  static polar::Tokenizer t = polar::Tokenizer::load(polar::testing::tiny_tokenizer_dir());
  return t;
}

std::string formatted(const std::string& p, const std::string& r, const std::string& o,
                      const std::string& end) {
  return p + "\n" + r + "<|reward|>" + p + "\n" + o + end;
}

// The status and message of the HttpError `fn` throws (0 when it does not throw).
template <typename Fn>
std::pair<int, std::string> error_of(Fn fn) {
  try {
    fn();
  } catch (const HttpError& e) {
    return {e.status(), e.what()};
  }
  return {0, ""};
}

}  // namespace

TEST(ServeFormatted, JoinedStringGivesTheTemplateIdsOfItsParts) {
  const char* cases[][3] = {{"what is 12 and 7", "the answer is 19", "answer 19"},
                            {"how many trees", "many", "a sea of trees and sky"},
                            {"write about the sea", "the sea is a sky", "yes"}};
  polar::TemplateLimits limits;
  for (auto& c : cases) {
    auto group =
        polar::encode_group_text(tok(), polar::TemplateKind::Finetune, c[0], c[1], {c[2]}, limits);
    ASSERT_TRUE(group);
    std::vector<int32_t> expected = group->prefix;
    expected.insert(expected.end(), group->candidates[0].begin(), group->candidates[0].end());
    // POLAR's client appends "[UNUSED_TOKEN_130]"; the tokenizer's own piece works the same.
    EXPECT_EQ(tokenize_formatted(tok(), formatted(c[0], c[1], c[2], "[UNUSED_TOKEN_130]")),
              expected)
        << c[0];
    EXPECT_EQ(tokenize_formatted(tok(), formatted(c[0], c[1], c[2], "<|reward_token|>")), expected)
        << c[0];
  }
}

TEST(ServeFormatted, RewardTokenCheckAndEdgeCases) {
  EXPECT_TRUE(ends_with_reward_token(tok(), "a<|reward|>b[UNUSED_TOKEN_130]"));
  EXPECT_TRUE(ends_with_reward_token(tok(), "<|reward_token|>"));
  EXPECT_FALSE(ends_with_reward_token(tok(), "a<|reward|>b"));
  EXPECT_FALSE(ends_with_reward_token(tok(), "[UNUSED_TOKEN_130] "));
  EXPECT_FALSE(ends_with_reward_token(tok(), ""));
  const auto& sp = tok().special();
  EXPECT_EQ(tokenize_formatted(tok(), "[UNUSED_TOKEN_130]"),
            (std::vector<int32_t>{sp.bos, sp.reward}));
  EXPECT_EQ(tokenize_formatted(tok(), "<|reward|><|reward|>"),
            (std::vector<int32_t>{sp.bos, sp.reward_sep, sp.reward_sep}));
  EXPECT_EQ(tokenize_formatted(tok(), ""), (std::vector<int32_t>{sp.bos}));
}

TEST(ServeProtocol, MalformedJsonAndDepthAre400WithTheReason) {
  RequestLimits limits;
  auto [status, message] = error_of([&] { parse_body("{\"input\": [", limits); });
  EXPECT_EQ(status, 400);
  EXPECT_NE(message.find("malformed JSON"), std::string::npos) << message;
  EXPECT_EQ(error_of([&] { parse_body("", limits); }).first, 400);
  std::string deep(100, '[');
  deep += std::string(100, ']');
  auto depth = error_of([&] { parse_body(deep, limits); });
  EXPECT_EQ(depth.first, 400);
  EXPECT_NE(depth.second.find("nesting deeper than 32"), std::string::npos) << depth.second;
  EXPECT_EQ(parse_body("{\"input\": [\"x\"]}", limits)["input"][0], "x");
}

TEST(ServeProtocol, LimitsAndFieldErrorsNameWhatIsWrong) {
  RequestLimits limits;
  limits.max_sequences = 3;
  limits.max_length = 40;
  const std::string ok = formatted("what is 1", "yes", "no", "[UNUSED_TOKEN_130]");
  struct Case {
    json body;
    const char* expect;
  } cases[] = {
      {json{{"input", {ok, ok, ok, ok}}}, "sequences per request (--max-sequences)"},
      {json{{"input", formatted(std::string(200, 'a'), "b", "c", "[UNUSED_TOKEN_130]")}},
       "tokens per sequence (--max-length)"},
      {json{{"input", {formatted("a", "b", "c", "")}}}, "does not end with the reward token"},
      {json{{"input", json::array()}}, "at least one sequence"},
      {json{{"input", {ok, 7}}}, "\"input\"[1]: expected a string"},
      {json{{"inputs", {ok}}}, "missing field \"input\""},
      {json{{"input", {ok}}, {"model", 3}}, "\"model\": expected a string"},
      {json{{"input", {1, 2, 999999}}}, "expected a token id in [0, "},
      {json{{"input", {1, 2, 3}}}, "does not end with the reward token"},
      {json::array({ok}), "expected a JSON object"},
  };
  for (const auto& c : cases) {
    auto [status, message] = error_of([&] { parse_pooling(c.body, tok(), limits); });
    EXPECT_EQ(status, 400) << c.body.dump();
    EXPECT_NE(message.find(c.expect), std::string::npos) << c.body.dump() << " -> " << message;
  }
  auto classify = error_of([&] { parse_classify(json{{"text", {ok, 1}}}, tok(), limits); });
  EXPECT_NE(classify.second.find("\"text\"[1]: expected a string"), std::string::npos)
      << classify.second;
  auto score = error_of([&] {
    parse_score(json{{"prompt", "a"}, {"reference", "b"}}, tok(), limits);
  });
  EXPECT_NE(score.second.find("exactly one of \"output\" and \"outputs\""), std::string::npos)
      << score.second;
  auto messages = error_of([&] {
    parse_score(
        json{
            {"prompt", json::array({json{{"role", "user"}}})}, {"reference", "b"}, {"output", "c"}},
        tok(), limits);
  });
  EXPECT_NE(messages.second.find("has no \"content\""), std::string::npos) << messages.second;
}

TEST(ServeProtocol, ResponsesHaveTheShapesClientsRead) {
  RequestLimits limits;
  const std::string ok = formatted("what is 1", "yes", "no", "[UNUSED_TOKEN_130]");
  ParsedRequest req = parse_pooling(json{{"input", {ok, ok}}}, tok(), limits);
  ASSERT_EQ(req.sequences(), 2);
  EXPECT_EQ(req.tokens(), 2 * static_cast<int64_t>(tokenize_formatted(tok(), ok).size()));
  ResponseInfo info{"m", "pool-1", 5, 0.1};
  std::vector<float> rewards{0.5f, -1.25f};
  json v = pooling_response(PoolingApi::Vllm, req, rewards, info);
  EXPECT_EQ(v["object"], "list");
  EXPECT_EQ(v["data"][1]["object"], "pooling");
  EXPECT_EQ(v["data"][1]["data"].back()[0].get<double>(), -1.25);  // data[i]["data"][-1][0]
  json l = pooling_response(PoolingApi::Lmdeploy, req, rewards, info);
  EXPECT_EQ(l["data"][0]["data"].get<double>(), 0.5);  // data[i]["data"]
  json s = classify_response(req, rewards, info);
  ASSERT_TRUE(s.is_array());
  EXPECT_EQ(s[1]["embedding"][0].get<double>(), -1.25);  // e["embedding"][0]
  EXPECT_TRUE(s[0]["meta_info"].contains("prompt_tokens"));

  ParsedRequest one = parse_score(
      json{{"prompt", "a"}, {"reference", "b"}, {"outputs", {"c", "d"}}}, tok(), limits);
  ASSERT_EQ(one.groups.size(), 1u);
  EXPECT_EQ(score_response(one, rewards, info)["rewards"], json({0.5, -1.25}));
  ParsedRequest many =
      parse_score(json::array({json{{"prompt", "a"}, {"reference", "b"}, {"output", "c"}},
                               json{{"prompt", "a"}, {"reference", "b"}, {"output", "d"}}}),
                  tok(), limits);
  EXPECT_EQ(score_response(many, rewards, info)["data"][1]["rewards"], json({-1.25}));
  EXPECT_EQ(error_body(404, "x")["code"], 404);
}

TEST(ServeProtocol, ErrorTextWithInvalidUtf8StillSerialises) {
  std::string bad = "\xff\xfe";
  EXPECT_NO_THROW(json_text(error_body(400, "no endpoint " + bad)));
}

TEST(ServeMetrics, PrometheusTextHasCountersAndACumulativeHistogram) {
  Metrics m;
  m.count_request("/pooling", 200);
  m.count_request("/nope/../x", 404);
  m.observe_latency(0.003);
  m.observe_latency(20.0);
  polar::serve::BatcherStats b;
  b.sequences = 7;
  std::string t = m.prometheus_text(b);
  EXPECT_NE(t.find("polar_requests_total{path=\"/pooling\",code=\"200\"} 1"), std::string::npos)
      << t;
  EXPECT_NE(t.find("polar_requests_total{path=\"other\",code=\"404\"} 1"), std::string::npos) << t;
  EXPECT_NE(t.find("polar_sequences_total 7"), std::string::npos) << t;
  EXPECT_NE(t.find("polar_request_duration_seconds_bucket{le=\"0.005\"} 1"), std::string::npos)
      << t;
  EXPECT_NE(t.find("polar_request_duration_seconds_bucket{le=\"10\"} 1"), std::string::npos) << t;
  EXPECT_NE(t.find("polar_request_duration_seconds_bucket{le=\"+Inf\"} 2"), std::string::npos) << t;
  EXPECT_NE(t.find("polar_request_duration_seconds_count 2"), std::string::npos) << t;
}
