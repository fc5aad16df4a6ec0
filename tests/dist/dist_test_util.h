// Helpers for the multi-process tests: run polar-run / polar as subprocesses with a timeout,
// find free ports, list a process's descendants, and compare checkpoints' parameters.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace polar::testing {

std::string polar_run_binary();  // build/polar-run
std::string polar_binary();      // build/polar
std::string self_binary();       // this test executable

// A TCP port on 127.0.0.1 that nobody listens on right now.
int free_tcp_port();

// A child process (its own process group) whose stdout+stderr are collected.
class Subprocess {
 public:
  Subprocess(const std::vector<std::string>& argv,
             const std::map<std::string, std::string>& extra_env = {});
  ~Subprocess();  // kills the process group if still running
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  // Waits up to `timeout`; on timeout kills the process group and returns -1000.
  // Otherwise the exit code, or 128 + signal.
  int wait(std::chrono::milliseconds timeout);
  bool running();
  const std::string& output();                 // everything read so far (complete after wait)
  double seconds() const { return seconds_; }  // from start to exit, after wait

 private:
  void drain(int timeout_ms);
  pid_t pid_ = -1;
  int fd_ = -1;
  bool exited_ = false;
  int code_ = 0;
  double seconds_ = 0;
  std::chrono::steady_clock::time_point started_;
  std::string output_;
};

// All live descendants of `pid` (children, grandchildren, ...), from /proc.
std::vector<pid_t> descendants(pid_t pid);
bool process_alive(pid_t pid);
// The value of `name` in /proc/PID/environ, or "" when absent/unreadable.
std::string process_env(pid_t pid, const std::string& name);

// Largest absolute difference over all tensors of two safetensors files (same names and shapes
// required; returns +inf otherwise).
double max_parameter_difference(const std::string& a, const std::string& b);

}  // namespace polar::testing
