// A small OpenAI-compatible completion server on 127.0.0.1 for the client tests
// (cpp-httplib): /v1/models lists its models, /v1/completions and
// /v1/chat/completions answer with a text made from the request
// ("<prompt>|<seed>"), and it can be told to fail transiently, to die after N
// answers, to stall, or to send a malformed body. Every request body is
// recorded.
#pragma once

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace polar::sample::testutil {

class FakeOpenAIServer {
 public:
  explicit FakeOpenAIServer(std::vector<std::string> models = {"tiny"})
      : models_(std::move(models)) {
    server_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      nlohmann::json data = nlohmann::json::array();
      for (const auto& m : models_) data.push_back({{"id", m}, {"object", "model"}});
      res.set_content(nlohmann::json{{"object", "list"}, {"data", data}}.dump(),
                      "application/json");
    });
    server_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      answer(req, res, false);
    });
    server_.Post(
        "/v1/chat/completions",
        [this](const httplib::Request& req, httplib::Response& res) { answer(req, res, true); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() before the accept loop runs would be lost (and the join would wait
    // forever).
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeOpenAIServer() { stop(); }

  void stop() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<nlohmann::json> requests() {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }
  int64_t answered() const { return answered_; }

  std::atomic<int> fail_next{0};       // answer 503 to this many completion requests
  std::atomic<int64_t> die_after{-1};  // after this many answers, answer 500 to everything
  std::atomic<bool> malformed{false};  // answer 200 with a body that has no choices
  std::atomic<int> stall_ms{0};        // sleep this long before answering
  std::string finish_reason = "stop";  // set before the first request
  // Context length of the model, in bytes of the prompt (0: none): a longer prompt gets vLLM's
  // 400 "maximum context length" answer.
  std::atomic<int64_t> context_bytes{0};
  // Answer 400 to a request with top_k -1, as lmdeploy does.
  std::atomic<bool> lmdeploy_top_k{false};

 private:
  void answer(const httplib::Request& req, httplib::Response& res, bool chat) {
    const auto body = nlohmann::json::parse(req.body, nullptr, false);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back({{"path", req.path}, {"body", body}});
    }
    if (stall_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(stall_ms.load()));
    if (fail_next > 0) {
      --fail_next;
      res.status = 503;
      res.set_content(R"({"error": {"message": "overloaded"}})", "application/json");
      return;
    }
    if (die_after >= 0 && answered_ >= die_after) {
      res.status = 500;
      res.set_content(R"({"error": {"message": "engine died"}})", "application/json");
      return;
    }
    if (!body.is_object() || !body.contains("model") ||
        std::find(models_.begin(), models_.end(), body["model"]) == models_.end()) {
      res.status = 404;
      res.set_content(R"({"error": {"message": "The model does not exist."}})", "application/json");
      return;
    }
    if (malformed) {
      res.set_content(R"({"id": "x", "object": "text_completion"})", "application/json");
      return;
    }
    const std::string prompt = chat ? body["messages"][0]["content"].get<std::string>()
                                    : body["prompt"].get<std::string>();
    if (lmdeploy_top_k && body.contains("top_k") && body["top_k"] == -1) {
      res.status = 400;
      res.set_content(
          R"({"error": {"message": "The value of top_k must be greater than or equal to 0", "code": 400}})",
          "application/json");
      return;
    }
    if (context_bytes > 0 && static_cast<int64_t>(prompt.size()) > context_bytes) {
      res.status = 400;
      res.set_content(
          R"({"object": "error", "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.", "type": "BadRequestError", "param": null, "code": 400})",
          "application/json");
      return;
    }
    const std::string text = prompt + "|" + std::to_string(body.value("seed", 0ull));
    nlohmann::json choice = {{"index", 0}, {"finish_reason", finish_reason}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", text}};
    } else {
      choice["text"] = text;
    }
    ++answered_;
    res.set_content(
        nlohmann::json{
            {"id", "cmpl-1"}, {"choices", {choice}}, {"usage", {{"completion_tokens", 7}}}}
            .dump(),
        "application/json");
  }

  std::vector<std::string> models_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = -1;
  std::mutex mutex_;
  std::vector<nlohmann::json> requests_;
  std::atomic<int64_t> answered_{0};
};

}  // namespace polar::sample::testutil
