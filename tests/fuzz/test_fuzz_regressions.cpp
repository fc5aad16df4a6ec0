// Inputs the fuzz campaigns found mishandled, each now refused with an error naming the input:
// a tokenizer.json value of the wrong type (was a JSON library exception) or a token id past
// 2^32 (was narrowed to a small valid id), a request body with a number too large for a double
// (was a 500), /get_reward and /score refusals that did not name the key, and pool files whose
// timeout or retry back-off overflow the clock or whose built-in policy has no model_dir.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/tiny_data.h"
#include "fuzz/fuzz_seeds.h"
#include "fuzz/fuzz_util.h"
#include "polar/common/error.h"
#include "polar/sample/pool.h"
#include "polar/serve/protocol.h"
#include "polar/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using polar::testing::TempDir;

namespace {

// The message of the polar::Error that loading `tokenizer_json` throws ("" when it loads).
std::string tokenizer_error(const TempDir& tmp, const json& tokenizer_json) {
  polar::fuzz::write_file(tmp / "tokenizer.json", tokenizer_json.dump());
  try {
    polar::Tokenizer::load(tmp.path());
  } catch (const polar::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(FuzzRegressions, TokenizerJsonValuesOfTheWrongTypeAreNamedErrors) {
  TempDir tmp;
  const auto seeds = polar::fuzz::tokenizer_json_seeds();
  json j = seeds[1];  // Metaspace: a decoder Strip with "start", "prepend_scheme" strings
  j["decoder"]["decoders"][3]["start"] = true;
  EXPECT_NE(tokenizer_error(tmp, j).find(tmp / "tokenizer.json"), std::string::npos);
  j = seeds[1];
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "x"}, {"prepend_scheme", 5}};
  EXPECT_NE(tokenizer_error(tmp, j).find("wrong type"), std::string::npos);
  j = seeds[0];
  j["post_processor"]["single"][0]["SpecialToken"]["id"] = json::array({"<s>"});
  EXPECT_NE(tokenizer_error(tmp, j).find(tmp / "tokenizer.json"), std::string::npos);
}

TEST(FuzzRegressions, TokenIdsPast32BitsAreRefusedNotNarrowed) {
  TempDir tmp;
  json j = polar::fuzz::tokenizer_json_seeds()[0];
  ASSERT_EQ(tokenizer_error(tmp, j), "");
  j["added_tokens"][1]["id"] = (int64_t{1} << 32) + 1;  // was read as id 1
  EXPECT_NE(tokenizer_error(tmp, j).find("added_tokens[1].id"), std::string::npos);
  j = polar::fuzz::tokenizer_json_seeds()[0];
  j["post_processor"]["special_tokens"]["<s>"]["ids"] = {int64_t{1} << 32};  // was bos 0
  EXPECT_NE(tokenizer_error(tmp, j).find("special_tokens"), std::string::npos);
}

TEST(FuzzRegressions, RequestBodiesGet400sNamingTheKey) {
  const polar::Tokenizer tok = polar::Tokenizer::load(polar::testing::tiny_tokenizer_dir());
  const polar::serve::RequestLimits limits;
  auto refusal = [&](const std::string& body, auto parse) -> std::pair<int, std::string> {
    try {
      parse(polar::serve::parse_body(body, limits), tok, limits);
    } catch (const polar::serve::HttpError& e) {
      return {e.status(), e.what()};
    }
    return {200, ""};
  };
  // A number past a double's range was a JSON library out_of_range error: the server's 500.
  auto [status, message] = refusal(R"({"input": [1, -1e999999]})", polar::serve::parse_pooling);
  EXPECT_EQ(status, 400);
  EXPECT_NE(message.find("malformed JSON"), std::string::npos) << message;
  std::tie(status, message) =
      refusal(R"({"query": ["a", 7], "prompts": ["a", "b"], "labels": ["x", "y"]})",
              polar::serve::parse_get_reward);
  EXPECT_EQ(status, 400);
  EXPECT_NE(message.find("\"query\"[1]: expected a string, got number"), std::string::npos)
      << message;
  std::tie(status, message) = refusal(R"("text")", polar::serve::parse_score);
  EXPECT_EQ(status, 400);
  EXPECT_EQ(message.rfind("body: ", 0), 0u) << message;
}

TEST(FuzzRegressions, PoolTimeoutsAndRetriesMustFitTheClock) {
  TempDir tmp;
  const std::string path = tmp / "pool.json";
  auto error = [&](const std::string& pointer, const json& value) {
    json pool = polar::fuzz::pool_seed();
    pool[json::json_pointer(pointer)] = value;
    polar::fuzz::write_file(path, pool.dump());
    try {
      polar::sample::read_pool(path);
    } catch (const polar::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  ASSERT_EQ(error("/policies/0/timeout_s", 30), "");
  EXPECT_NE(error("/policies/0/timeout_s", 1e30).find(".timeout_s"), std::string::npos);
  EXPECT_NE(error("/policies/0/timeout_s", 1e-320).find(".timeout_s"), std::string::npos);
  EXPECT_NE(error("/policies/0/max_retries", int64_t{1} << 62).find(".max_retries"),
            std::string::npos);
  EXPECT_NE(error("/policies/0/retry_backoff_s", 1.8e19).find(".retry_backoff_s"),
            std::string::npos);
  EXPECT_NE(error("/policies/3/model_dir", "").find(".model_dir"), std::string::npos);
  EXPECT_NE(error("/policies/3/model_dir", "").find(path), std::string::npos);
}
