// Subprocess, port and /proc helpers for the multi-process tests (see dist_test_util.h).
#include "dist/dist_test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "polar/io/safetensors.h"

extern char** environ;

namespace polar::testing {

std::string polar_run_binary() { return std::string(POLAR_BINARY_DIR) + "/polar-run"; }
std::string polar_binary() { return std::string(POLAR_BINARY_DIR) + "/polar"; }

std::string self_binary() {
  char buffer[4096];
  const ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string();
}

int free_tcp_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

Subprocess::Subprocess(const std::vector<std::string>& argv,
                       const std::map<std::string, std::string>& extra_env) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    if (extra_env.count(entry.substr(0, entry.find('='))) == 0) env.push_back(entry);
  }
  for (const auto& [key, value] : extra_env) env.push_back(key + "=" + value);
  std::vector<char*> envp, args;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return;
  const pid_t parent = getpid();
  started_ = std::chrono::steady_clock::now();
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(125);
    dup2(pipe_fds[1], 1);
    dup2(pipe_fds[1], 2);
    execvpe(args[0], args.data(), envp.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  fd_ = pipe_fds[0];
  fcntl(fd_, F_SETFL, O_NONBLOCK);
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !exited_) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (fd_ >= 0) close(fd_);
}

void Subprocess::drain(int timeout_ms) {
  if (fd_ < 0) return;
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return;
  char buffer[65536];
  while (true) {
    const ssize_t n = read(fd_, buffer, sizeof(buffer));
    if (n > 0) {
      output_.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      close(fd_);
      fd_ = -1;
    }
    return;
  }
}

bool Subprocess::running() {
  if (exited_ || pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    exited_ = true;
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

int Subprocess::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(-pid_, SIGKILL);
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      exited_ = true;
      code_ = -1000;
      break;
    }
    drain(20);
  }
  // Collect what is left in the pipe (descendants may hold it open briefly).
  for (int i = 0; i < 100 && fd_ >= 0; ++i) drain(20);
  return code_;
}

const std::string& Subprocess::output() {
  drain(0);
  return output_;
}

namespace {

// (pid, ppid, state) of every process, from /proc/PID/stat.
struct ProcInfo {
  pid_t pid;
  pid_t ppid;
  char state;
};

std::vector<ProcInfo> all_processes() {
  std::vector<ProcInfo> out;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return out;
  while (dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in("/proc/" + name + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(close_paren + 2));
    ProcInfo info{static_cast<pid_t>(std::stol(name)), 0, '?'};
    rest >> info.state >> info.ppid;
    out.push_back(info);
  }
  closedir(dir);
  return out;
}

}  // namespace

std::vector<pid_t> descendants(pid_t pid) {
  const auto procs = all_processes();
  std::vector<pid_t> found{pid}, out;
  for (size_t i = 0; i < found.size(); ++i) {
    for (const auto& p : procs) {
      if (p.ppid == found[i] && p.state != 'Z') {
        found.push_back(p.pid);
        out.push_back(p.pid);
      }
    }
  }
  return out;
}

bool process_alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return false;
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close_paren = stat.rfind(')');
  return close_paren != std::string::npos && close_paren + 2 < stat.size() &&
         stat[close_paren + 2] != 'Z';
}

std::string process_env(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ");
  std::string entry;
  while (std::getline(in, entry, '\0')) {
    if (entry.rfind(name + "=", 0) == 0) return entry.substr(name.size() + 1);
  }
  return "";
}

double max_parameter_difference(const std::string& a, const std::string& b) {
  const auto fa = polar::io::SafetensorsFile::open(a);
  const auto fb = polar::io::SafetensorsFile::open(b);
  if (fa.tensors().size() != fb.tensors().size()) return std::numeric_limits<double>::infinity();
  double worst = 0;
  for (const auto& info : fa.tensors()) {
    if (!fb.contains(info.name)) return std::numeric_limits<double>::infinity();
    const auto ta = fa.tensor(info.name).to(torch::kFloat64);
    const auto tb = fb.tensor(info.name).to(torch::kFloat64);
    if (!ta.sizes().equals(tb.sizes())) return std::numeric_limits<double>::infinity();
    if (ta.numel() > 0) worst = std::max(worst, (ta - tb).abs().max().item<double>());
  }
  return worst;
}

}  // namespace polar::testing
