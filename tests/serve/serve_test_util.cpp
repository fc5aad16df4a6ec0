#include "serve/serve_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "polar/checkpoint/checkpoint.h"
#include "polar/model/reward_model.h"

namespace polar::testing {

std::string write_serve_checkpoint(const TempDir& tmp, const std::string& name) {
  ModelConfig shape;
  shape.vocab_size = 320;
  shape.hidden_size = 32;
  shape.num_layers = 2;
  shape.num_heads = 4;
  shape.num_kv_heads = 2;
  shape.intermediate_size = 64;
  RewardModel model(shape);
  model->reset_parameters(11);
  auto tok = Tokenizer::load(tiny_tokenizer_dir());
  nlohmann::json config{{"model", shape.to_json()}};
  std::string dir = tmp / name;
  save_checkpoint(dir, {&model, &tok, &config, nullptr, nullptr, {}});
  return dir;
}

std::string client_format(const ScoreInput& in) {
  return in.prompt + "\n" + in.reference + "<|reward|>" + in.prompt + "\n" + in.output +
         "[UNUSED_TOKEN_130]";
}

namespace {

// $POLAR_BIN (set by ctest, and on machines where the build tree moved), else the build's polar.
std::string serve_binary() {
  const char* env = std::getenv("POLAR_BIN");
  return env && *env ? env : polar_binary();
}

}  // namespace

ServerProcess::ServerProcess(const std::string& checkpoint, const std::vector<std::string>& args,
                             const TempDir& tmp, const std::string& device,
                             const std::map<std::string, std::string>& env) {
  static int counter = 0;
  const std::string port_file = tmp / ("port-" + std::to_string(counter++));
  std::vector<std::string> argv{serve_binary(), "serve", "--checkpoint", checkpoint,
                                "--port",       "0",     "--port-file",  port_file,
                                "--device",     device};
  argv.insert(argv.end(), args.begin(), args.end());
  proc_ = std::make_unique<Subprocess>(argv, env);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(port_file);
    if (in >> port_) return;
    if (!proc_->running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("polar serve did not start listening:\n" + proc_->output());
}

std::unique_ptr<httplib::Client> ServerProcess::client(int timeout_s) const {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
  c->set_read_timeout(timeout_s);
  c->set_connection_timeout(timeout_s);
  return c;
}

std::vector<double> polar_score(const std::string& checkpoint,
                                const std::vector<ScoreInput>& inputs, const TempDir& tmp,
                                const std::vector<std::string>& args) {
  const std::string in_path = tmp / "score_input.jsonl", out_path = tmp / "score_output.jsonl";
  {
    std::ofstream out(in_path);
    for (const auto& r : inputs) {
      out << nlohmann::json{{"prompt", r.prompt}, {"reference", r.reference}, {"output", r.output}}
                 .dump()
          << "\n";
    }
  }
  std::vector<std::string> argv{serve_binary(), "score", "--checkpoint", checkpoint,
                                "--input",      in_path, "--output",     out_path};
  argv.insert(argv.end(), args.begin(), args.end());
  Subprocess score(argv);
  if (score.wait(std::chrono::seconds(120)) != 0)
    throw std::runtime_error("polar score failed:\n" + score.output());
  std::vector<double> rewards;
  std::ifstream in(out_path);
  for (std::string line; std::getline(in, line);)
    rewards.push_back(nlohmann::json::parse(line).at("reward").get<double>());
  return rewards;
}

std::string raw_exchange(int port, const std::string& bytes, int timeout_ms) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    throw std::runtime_error("connect() to 127.0.0.1:" + std::to_string(port) + " failed");
  }
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before reading everything
    sent += static_cast<size_t>(n);
  }
  // Read one response: up to the end of the headers, then Content-Length bytes of body (the
  // connection may stay open). Closing our side early would make the server drop the answer.
  std::string response;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  for (;;) {
    const size_t head_end = response.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      std::string head = response.substr(0, head_end);
      for (auto& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      const size_t cl = head.find("content-length:");
      const size_t length =
          cl == std::string::npos ? 0 : std::strtoull(head.c_str() + cl + 15, nullptr, 10);
      if (response.size() >= head_end + 4 + length) break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return response;
}

int raw_status(const std::string& response) {
  std::istringstream in(response);
  std::string version;
  int status = -1;
  if (!(in >> version >> status) || version.rfind("HTTP/1.", 0) != 0) return -1;
  return status;
}

}  // namespace polar::testing
