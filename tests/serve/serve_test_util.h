// Helpers for the server tests: a tiny random checkpoint, a real `polar serve` process on a free
// 127.0.0.1 port, POLAR's client string format, `polar score` run as a process, and a raw
// socket exchange for requests an HTTP client library would refuse to send.
#pragma once

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/tiny_data.h"
#include "dist/dist_test_util.h"

namespace polar::testing {

// A 2-layer random model with the tiny tokenizer, saved as a checkpoint under `tmp`.
std::string write_serve_checkpoint(const TempDir& tmp, const std::string& name = "ckpt");

struct ScoreInput {
  std::string prompt, reference, output;
};

// What POLAR's RewardModelClient posts for one record (short texts: no truncation).
std::string client_format(const ScoreInput& in);

class ServerProcess {
 public:
  // Starts `polar serve --checkpoint CKPT --port 0 --port-file ... --device DEVICE ARGS` and waits
  // until it listens; `env` is added to its environment.
  ServerProcess(const std::string& checkpoint, const std::vector<std::string>& args,
                const TempDir& tmp, const std::string& device = "cpu",
                const std::map<std::string, std::string>& env = {});
  int port() const { return port_; }
  std::unique_ptr<httplib::Client> client(int timeout_s = 30) const;
  Subprocess& process() { return *proc_; }

 private:
  std::unique_ptr<Subprocess> proc_;
  int port_ = -1;
};

// Rewards from `polar score` on the same records (run as a process).
std::vector<double> polar_score(const std::string& checkpoint,
                                const std::vector<ScoreInput>& inputs, const TempDir& tmp,
                                const std::vector<std::string>& args = {"--device", "cpu"});

// Sends `bytes` on a fresh connection and returns the first response (headers and body; "" when
// the server closed without answering) received within `timeout_ms`.
std::string raw_exchange(int port, const std::string& bytes, int timeout_ms = 10000);

// The status code of a raw HTTP response ("HTTP/1.1 400 ..."), or -1.
int raw_status(const std::string& response);

}  // namespace polar::testing
