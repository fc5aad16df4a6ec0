#include "serve/fuzz_requests.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <vector>

namespace polar::testing {

namespace {

using nlohmann::json;
using Rng = std::mt19937_64;

const char* kPaths[] = {"/pooling", "/classify", "/v1/embeddings", "/score", "/get_reward"};
constexpr size_t kNumPaths = sizeof(kPaths) / sizeof(kPaths[0]);
const std::string kGood = "what is 1\nyes<|reward|>what is 1\nno[UNUSED_TOKEN_130]";

size_t pick(Rng& rng, size_t n) { return static_cast<size_t>(rng() % n); }

std::string random_bytes(Rng& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

std::string post(const std::string& path, const std::string& body) {
  return "POST " + path +
         " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// A valid body for `path`, to be broken by the caller.
std::string valid_body(Rng& rng, const std::string& path) {
  if (path == "/score")
    return json{{"prompt", "what is 1"}, {"reference", "yes"}, {"outputs", {"no", "yes"}}}.dump();
  if (path == "/classify") return json{{"model", "m"}, {"text", {kGood, kGood}}}.dump();
  if (path == "/get_reward")
    return json{{"query", {"<|im_start|>user\nwhat is 1<|im_end|>\n"}}, {"labels", {"yes"}}}.dump();
  return json{{"input", std::vector<std::string>(1 + pick(rng, 3), kGood)}}.dump();
}

// Bodies that are not JSON.
std::string broken_json(Rng& rng, const std::string& path) {
  std::string good = valid_body(rng, path);
  switch (pick(rng, 6)) {
    case 0:
      return good.substr(0, pick(rng, good.size()));  // truncated (a proper prefix)
    case 1:
      return good + std::string(1, "x}]\",:"[pick(rng, 6)]);  // trailing garbage
    case 2:
      return "\x01" + random_bytes(rng, pick(rng, 300));  // control byte first
    case 3:
      return "{\"input\": [\"" + random_bytes(rng, 1 + pick(rng, 40)) +
             "\xff\"]}";  // invalid UTF-8
    case 4:
      return "{\"input\": [\"\\ud800" + std::string("[UNUSED_TOKEN_130]") +
             "\"]}";  // lone surrogate
    default: {
      size_t depth = 33 + pick(rng, 3000);  // beyond the depth limit, balanced or not
      return std::string(depth, '[') + std::string(pick(rng, 2) ? depth : 0, ']');
    }
  }
}

json wrong_value(Rng& rng) {
  switch (pick(rng, 9)) {
    case 0:
      return nullptr;
    case 1:
      return static_cast<int64_t>(rng());
    case 2:
      return -1.5;
    case 3:
      return json::object();
    case 4:
      return json::array();
    case 5:
      return true;
    case 6:
      return "no reward token " + std::to_string(rng() % 1000);
    case 7:
      return json::array({json::array({-1, 5})});
    default:
      return json::array({1e300, "x"});
  }
}

// JSON that parses but breaks the request schema or a limit.
std::string bad_schema(Rng& rng, const std::string& path, const FuzzLimits& limits) {
  const std::string key = path == "/classify" ? "text" : path == "/get_reward" ? "query" : "input";
  switch (pick(rng, 7)) {
    case 0:
      return json{{key, wrong_value(rng)}}.dump();
    case 1:
      return json{{key, {kGood, wrong_value(rng)}}}.dump();
    case 2:
      return json::array({wrong_value(rng)}).dump();
    case 3:
      return json{{key, std::vector<std::string>(
                            static_cast<size_t>(limits.max_sequences) + 1 + pick(rng, 5), kGood)}}
          .dump();
    case 4:
      return json{
          {key,
           {std::string(static_cast<size_t>(limits.max_length) * 2, '~') + "[UNUSED_TOKEN_130]"}}}
          .dump();
    case 5:
      return json{{key, {kGood.substr(0, pick(rng, kGood.size() - 1))}}}
          .dump();  // reward token cut off
    default: {
      json prompt = wrong_value(rng);
      if (prompt.is_string()) prompt = 7;  // a string prompt would be a valid record
      json r{{"prompt", prompt}, {"reference", "b"}, {"output", "c"}};
      if (pick(rng, 2))
        r = json{{"prompt", "a"}, {"reference", "b"}, {"output", "c"}, {"outputs", {"d"}}};
      return (path == "/score" ? r : json{{"input", r}}).dump();
    }
  }
}

std::string bad_http(Rng& rng, const FuzzLimits& limits) {
  const std::string body = json{{"input", {kGood}}}.dump();
  switch (pick(rng, 10)) {
    case 0:
      return "POST /pooling HTTP/1.1\r\nContent-Length: " +
             std::string(pick(rng, 2) ? "abc" : "-5") + "\r\n\r\n" + body;
    case 1:
      return "POST /pooling HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n" + body;
    case 2:
      return "POST /pooling HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + body +
             "\r\n0\r\n\r\n";
    case 3:
      return "POST /pooling HTTP/1.1\r\nX-" + std::string(9000, 'a') +
             ": 1\r\nContent-Length: 2\r\n\r\n{}";
    case 4:
      return random_bytes(rng, 1 + pick(rng, 200)) + "\r\n\r\n";
    case 5:
      return "POST /" + random_bytes(rng, 1 + pick(rng, 30)) +
             " HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    case 6:
      return "GET " + std::string(kPaths[pick(rng, kNumPaths)]) +
             " HTTP/1.1\r\nHost: x\r\n\r\n";  // wrong method
    case 7:
      return "POST /pooling HTTP/1.1\r\nContent-Length: " +
             std::to_string(limits.max_body_bytes + 1 + pick(rng, 1000)) + "\r\n\r\n" +
             std::string(static_cast<size_t>(limits.max_body_bytes) + 1, ' ');
    case 8:
      return "POST /pooling HTTP/1.1\r\nContent-Length: " +
             std::to_string(body.size() - 1 - pick(rng, 10)) + "\r\n\r\n" +
             body;  // the declared body is a proper prefix of the JSON
    default:
      return "BREW /pooling HTCPCP/1.0\r\nContent-Length: 2\r\n\r\n{}";
  }
}

}  // namespace

FuzzCase make_fuzz_case(Rng& rng, const FuzzLimits& limits) {
  const std::string path = kPaths[pick(rng, kNumPaths)];
  switch (pick(rng, 4)) {
    case 0:
      return {"broken_json", post(path, broken_json(rng, path))};
    case 1:
      return {"bad_schema", post(path, bad_schema(rng, path, limits))};
    case 2:
      return {"bad_http", bad_http(rng, limits)};
    default:
      return {"unknown_path",
              post("/" + std::to_string(rng() % 100000) + path, valid_body(rng, path))};
  }
}

}  // namespace polar::testing
