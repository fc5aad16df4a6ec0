// `polar serve --api-key`: the bearer check (every endpoint but /health), the key from
// POLAR_API_KEY, and the refusal to serve a non-loopback address without a key.
#include <gtest/gtest.h>

#include <chrono>

#include "polar/common/error.h"
#include "polar/serve/server.h"
#include "serve/serve_test_util.h"

using nlohmann::json;
using namespace polar::testing;
using namespace std::chrono_literals;

namespace {

const std::string kKey = "sk-polar-test-0123456789";

httplib::Headers bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

json score_body() {
  return {{"prompt", "what is 12 and 7"},
          {"reference", "the answer is 19"},
          {"outputs", json::array({"answer 19", "21"})}};
}

// A 401 with the error object every other failure uses.
void expect_unauthorized(const httplib::Result& res, const std::string& what) {
  ASSERT_TRUE(res) << what << ": no response";
  EXPECT_EQ(res->status, 401) << what << ": " << res->body;
  EXPECT_EQ(res->get_header_value("WWW-Authenticate"), "Bearer") << what;
  const json body = json::parse(res->body);
  EXPECT_EQ(body["object"], "error") << what;
  EXPECT_EQ(body["code"], 401) << what;
  EXPECT_EQ(body["type"], "AuthenticationError") << what;
}

class ServeAuth : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    ckpt_ = new std::string(write_serve_checkpoint(*tmp_));
  }
  static void TearDownTestSuite() {
    delete ckpt_;
    delete tmp_;
  }
  static TempDir* tmp_;
  static std::string* ckpt_;
};
TempDir* ServeAuth::tmp_ = nullptr;
std::string* ServeAuth::ckpt_ = nullptr;

}  // namespace

TEST(ServeAuthCheck, BearerMatchesOnlyTheExactKey) {
  using polar::serve::bearer_matches;
  EXPECT_TRUE(bearer_matches("Bearer " + kKey, kKey));
  EXPECT_FALSE(bearer_matches("", kKey));
  EXPECT_FALSE(bearer_matches(kKey, kKey));  // no scheme
  EXPECT_FALSE(bearer_matches("Basic " + kKey, kKey));
  EXPECT_FALSE(bearer_matches("Bearer " + kKey.substr(0, kKey.size() - 1), kKey));  // a prefix
  EXPECT_FALSE(bearer_matches("Bearer " + kKey + "x", kKey));
  EXPECT_FALSE(bearer_matches("Bearer  " + kKey, kKey));
  EXPECT_FALSE(bearer_matches("Bearer ", kKey));
}

TEST(ServeAuthCheck, OnlyLoopbackServesWithoutAKeyUnlessAllowed) {
  using polar::serve::check_exposure;
  polar::serve::ServeOptions o;
  for (const char* host : {"127.0.0.1", "127.0.1.1", "localhost", "::1"}) {
    o.host = host;
    EXPECT_NO_THROW(check_exposure(o)) << host;
  }
  for (const char* host : {"0.0.0.0", "10.0.0.5", "::", "example.org"}) {
    o.host = host;
    o.api_key.clear();
    o.allow_unauthenticated = false;
    try {
      check_exposure(o);
      ADD_FAILURE() << host << " was accepted without a key";
    } catch (const polar::Error& e) {
      EXPECT_NE(std::string(e.what()).find("refusing to serve on " + std::string(host)),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("--allow-unauthenticated"), std::string::npos);
    }
    o.api_key = kKey;
    EXPECT_NO_THROW(check_exposure(o)) << host;
    o.api_key.clear();
    o.allow_unauthenticated = true;
    EXPECT_NO_THROW(check_exposure(o)) << host;
  }
}

TEST_F(ServeAuth, MissingOrWrongKeyIs401OnEveryEndpointButHealth) {
  ServerProcess server(*ckpt_, {"--api-key", kKey}, *tmp_);
  auto c = server.client();
  // /health stays open: load balancers and the launcher's readiness checks carry no key.
  auto health = c->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);

  const std::string body = score_body().dump();
  for (const std::string path : {"/score", "/pooling", "/classify"}) {
    expect_unauthorized(c->Post(path.c_str(), body, "application/json"), path + " without a key");
    expect_unauthorized(c->Post(path.c_str(), bearer("wrong-key"), body, "application/json"),
                        path + " with a wrong key");
  }
  for (const std::string path : {"/v1/models", "/metrics", "/no-such-endpoint"}) {
    expect_unauthorized(c->Get(path.c_str()), path + " without a key");
    expect_unauthorized(c->Get(path.c_str(), bearer(kKey + "0")), path + " with a wrong key");
  }

  // The right key: the usual answers.
  auto scored = c->Post("/score", bearer(kKey), body, "application/json");
  ASSERT_TRUE(scored);
  EXPECT_EQ(scored->status, 200) << scored->body;
  EXPECT_EQ(json::parse(scored->body)["rewards"].size(), 2u) << scored->body;
  auto models = c->Get("/v1/models", bearer(kKey));
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  auto missing = c->Get("/no-such-endpoint", bearer(kKey));
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST_F(ServeAuth, KeyFromTheEnvironment) {
  ServerProcess server(*ckpt_, {}, *tmp_, "cpu", {{"POLAR_API_KEY", kKey}});
  auto c = server.client();
  expect_unauthorized(c->Get("/v1/models"), "no key");
  auto ok = c->Get("/v1/models", bearer(kKey));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_NE(server.process().output().find("API key required"), std::string::npos)
      << server.process().output();
}

TEST_F(ServeAuth, NonLoopbackAddressWithoutAKeyIsRefusedBeforeLoading) {
  Subprocess serve({polar_binary(), "serve", "--checkpoint", *ckpt_, "--host", "0.0.0.0", "--port",
                    "0", "--device", "cpu"});
  EXPECT_NE(serve.wait(60s), 0) << serve.output();
  EXPECT_NE(serve.output().find("refusing to serve on 0.0.0.0 without authentication"),
            std::string::npos)
      << serve.output();
  Subprocess empty_key(
      {polar_binary(), "serve", "--checkpoint", *ckpt_, "--api-key", "", "--device", "cpu"});
  EXPECT_NE(empty_key.wait(60s), 0) << empty_key.output();
  EXPECT_NE(empty_key.output().find("--api-key: expected a non-empty key"), std::string::npos)
      << empty_key.output();
}
