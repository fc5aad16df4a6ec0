// polar-run's supervisor: forks one node's workers (each in its own process group, killed if the
// launcher dies), relays their output line by line with a "[rankN]: " prefix, forwards SIGINT/
// SIGTERM, stops the whole group when one worker fails (SIGTERM, then SIGKILL after a grace
// period) and restarts it up to --max-restarts times. One thread and one poll() loop; signals
// arrive through a self-pipe.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "polar/dist/launcher.h"

extern char** environ;

namespace polar::dist {
namespace {

using Clock = std::chrono::steady_clock;

int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const int saved = errno;
  const unsigned char byte = static_cast<unsigned char>(sig);
  (void)!write(g_signal_pipe[1], &byte, 1);
  errno = saved;
}

void write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a closed stdout must not stop the supervision
    done += static_cast<size_t>(n);
  }
}

void say(const std::string& message) { write_all(2, "[polar-run]: " + message + "\n"); }

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "stopped with status " + std::to_string(status);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

bool make_dirs(const std::string& path) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos == path.size() || path[pos] == '/') {
      const std::string prefix = path.substr(0, pos);
      if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) return false;
    }
  }
  return true;
}

// One output stream of one worker: bytes are buffered until a newline so that lines of
// different ranks never interleave mid-line.
struct Stream {
  int fd = -1;
  int target_fd = 1;
  std::string pending;
};

struct Worker {
  int local_rank = 0;
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  int status = 0;
  Stream out, err;
  int log_fd = -1;
};

class Group {
 public:
  Group(const LaunchOptions& options, int attempt) : options_(options), attempt_(attempt) {}

  struct Result {
    bool success = false;
    int interrupted_by = 0;  // signal that interrupted the launcher, or 0
    int failed_rank = -1;
    int failed_status = 0;
  };

  Result run() {
    start_workers();
    while (true) {
      reap();
      const auto now = Clock::now();
      if (stopping_ && !killed_ && now >= kill_deadline_) {
        say("workers still running after the grace period (--stop-grace-seconds); sending SIGKILL");
        signal_all(SIGKILL);
        killed_ = true;
      }
      const bool any_running =
          std::any_of(workers_.begin(), workers_.end(), [](const Worker& w) { return w.running; });
      if (!any_running) {
        if (!cleaned_) {
          // Anything a worker left behind in its process group goes with it.
          for (const auto& w : workers_) kill(-w.pid, SIGKILL);
          cleaned_ = true;
          drain_deadline_ = now + std::chrono::seconds(2);
        }
        if (!any_stream_open() || now >= drain_deadline_) break;
      }
      poll_once(now);
    }
    for (auto& w : workers_) {
      close_stream(w, w.out);
      close_stream(w, w.err);
      if (w.log_fd >= 0) close(w.log_fd);
    }
    Result result;
    result.interrupted_by = interrupted_by_;
    result.failed_rank = failed_rank_;
    result.failed_status = failed_status_;
    result.success = interrupted_by_ == 0 && failed_rank_ < 0;
    return result;
  }

 private:
  void start_workers() {
    const int world = options_.nnodes * options_.nproc_per_node;
    std::string log_dir;
    if (!options_.log_dir.empty()) {
      log_dir = options_.log_dir + "/attempt_" + std::to_string(attempt_);
      if (!make_dirs(log_dir))
        say("cannot create log directory " + log_dir + ": " + strerror(errno));
    }
    workers_.resize(static_cast<size_t>(options_.nproc_per_node));
    for (int local = 0; local < options_.nproc_per_node; ++local) {
      Worker& w = workers_[static_cast<size_t>(local)];
      w.local_rank = local;
      w.rank = options_.node_rank * options_.nproc_per_node + local;
      if (!log_dir.empty()) {
        const std::string path = log_dir + "/rank_" + std::to_string(w.rank) + ".log";
        w.log_fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (w.log_fd < 0) say("cannot open " + path + ": " + strerror(errno));
      }
      spawn(w, world);
    }
  }

  std::vector<std::string> worker_environment(const Worker& w, int world) const {
    const std::vector<std::pair<std::string, std::string>> ours = {
        {"RANK", std::to_string(w.rank)},
        {"LOCAL_RANK", std::to_string(w.local_rank)},
        {"WORLD_SIZE", std::to_string(world)},
        {"LOCAL_WORLD_SIZE", std::to_string(options_.nproc_per_node)},
        {"GROUP_RANK", std::to_string(options_.node_rank)},
        {"GROUP_WORLD_SIZE", std::to_string(options_.nnodes)},
        {"ROLE_RANK", std::to_string(w.rank)},
        {"ROLE_WORLD_SIZE", std::to_string(world)},
        {"MASTER_ADDR", options_.master_addr},
        {"MASTER_PORT", std::to_string(options_.master_port)},
        {"TORCHELASTIC_RESTART_COUNT", std::to_string(attempt_)},
        {"TORCHELASTIC_MAX_RESTARTS", std::to_string(options_.max_restarts)},
    };
    std::vector<std::string> env;
    bool has_omp = false;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      const std::string key = entry.substr(0, entry.find('='));
      if (key == "OMP_NUM_THREADS") has_omp = true;
      if (std::none_of(ours.begin(), ours.end(), [&](const auto& kv) { return kv.first == key; }))
        env.push_back(entry);
    }
    for (const auto& [key, value] : ours) env.push_back(key + "=" + value);
    // As torchrun: several workers on one node each get one OpenMP thread unless told otherwise.
    if (!has_omp && options_.nproc_per_node > 1) env.push_back("OMP_NUM_THREADS=1");
    return env;
  }

  void spawn(Worker& w, int world) {
    int out_pipe[2], err_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
      say(std::string("pipe: ") + strerror(errno));
      _exit(1);
    }
    const std::vector<std::string> env = worker_environment(w, world);
    std::vector<char*> envp, argv;
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    for (const auto& a : options_.command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const pid_t launcher = getpid();

    // Block every signal across fork: until the child has reset its handlers, a signal sent to
    // its group would run the launcher's handler in the child and reach the launcher's self-pipe.
    sigset_t all, previous;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &previous);
    const pid_t pid = fork();
    if (pid < 0) {
      say(std::string("fork: ") + strerror(errno));
      _exit(1);
    }
    if (pid == 0) {
      setpgid(0, 0);
      // The worker dies with the launcher, even when the launcher is killed with SIGKILL.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != launcher) _exit(125);
      for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGPIPE}) signal(sig, SIG_DFL);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      const int devnull = open("/dev/null", O_RDONLY);
      if (devnull >= 0) dup2(devnull, 0);
      dup2(out_pipe[1], 1);
      dup2(err_pipe[1], 2);
      execvpe(argv[0], argv.data(), envp.data());
      const std::string message =
          "polar-run: cannot execute '" + options_.command[0] + "': " + strerror(errno) + "\n";
      (void)!write(2, message.data(), message.size());
      _exit(127);
    }
    setpgid(pid, pid);  // also here, so that signals sent right away reach the group
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    close(out_pipe[1]);
    close(err_pipe[1]);
    fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
    w.pid = pid;
    w.running = true;
    w.out = Stream{out_pipe[0], 1, {}};
    w.err = Stream{err_pipe[0], 2, {}};
  }

  void reap() {
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      auto it = std::find_if(workers_.begin(), workers_.end(),
                             [&](const Worker& w) { return w.pid == pid; });
      if (it == workers_.end()) continue;  // an orphaned grandchild handed to us as subreaper
      it->running = false;
      it->status = status;
      const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      if (failed && !stopping_) {
        failed_rank_ = it->rank;
        failed_status_ = status;
        say("rank " + std::to_string(it->rank) + " (local rank " + std::to_string(it->local_rank) +
            ", pid " + std::to_string(pid) + ") " + describe_status(status) +
            "; stopping the other workers");
        begin_stop(SIGTERM);
      }
    }
  }

  void begin_stop(int sig) {
    stopping_ = true;
    kill_deadline_ = Clock::now() + std::chrono::milliseconds(
                                        static_cast<int64_t>(options_.stop_grace_seconds * 1000));
    signal_all(sig);
  }

  void signal_all(int sig) {
    for (const auto& w : workers_) {
      if (w.running) kill(-w.pid, sig);
    }
  }

  bool any_stream_open() const {
    return std::any_of(workers_.begin(), workers_.end(),
                       [](const Worker& w) { return w.out.fd >= 0 || w.err.fd >= 0; });
  }

  void poll_once(Clock::time_point now) {
    std::vector<pollfd> fds{{g_signal_pipe[0], POLLIN, 0}};
    std::vector<std::pair<Worker*, Stream*>> owners{{nullptr, nullptr}};
    for (auto& w : workers_) {
      for (Stream* s : {&w.out, &w.err}) {
        if (s->fd < 0) continue;
        fds.push_back({s->fd, POLLIN, 0});
        owners.emplace_back(&w, s);
      }
    }
    // Wake up at least every 200 ms to reap and to honour the kill and drain deadlines.
    auto wake = now + std::chrono::milliseconds(200);
    if (stopping_ && !killed_) wake = std::min(wake, kill_deadline_);
    const int timeout_ms = static_cast<int>(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count()));
    if (poll(fds.data(), fds.size(), timeout_ms) < 0)
      return;  // EINTR: the signal byte is in the pipe
    if (fds[0].revents & POLLIN) handle_signals();
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) pump(*owners[i].first, *owners[i].second);
    }
  }

  void handle_signals() {
    unsigned char bytes[64];
    ssize_t n;
    while ((n = read(g_signal_pipe[0], bytes, sizeof(bytes))) > 0) {
      for (ssize_t i = 0; i < n; ++i) {
        const int sig = bytes[i];
        if (sig == SIGCHLD) continue;  // reaped on every turn of the loop
        if (interrupted_by_ == 0) {
          interrupted_by_ = sig;
          // A hang-up asks for the same orderly stop as SIGTERM (the trainer checkpoints on it).
          const int forward = sig == SIGHUP ? SIGTERM : sig;
          say(std::string("received ") + strsignal(sig) + "; sending " + strsignal(forward) +
              " to the workers");
          begin_stop(forward);
        } else if (!killed_) {
          say(std::string("received ") + strsignal(sig) + " again; killing the workers");
          signal_all(SIGKILL);
          killed_ = true;
        }
      }
    }
  }

  void emit(Worker& w, Stream& s, const std::string& line) {
    write_all(s.target_fd, "[rank" + std::to_string(w.rank) + "]: " + line + "\n");
    if (w.log_fd >= 0) write_all(w.log_fd, line + "\n");
  }

  void pump(Worker& w, Stream& s) {
    char buffer[65536];
    while (true) {
      const ssize_t n = read(s.fd, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return;  // EAGAIN: nothing more for now
      if (n == 0) {
        close_stream(w, s);
        return;
      }
      s.pending.append(buffer, static_cast<size_t>(n));
      size_t start = 0, newline;
      while ((newline = s.pending.find('\n', start)) != std::string::npos) {
        emit(w, s, s.pending.substr(start, newline - start));
        start = newline + 1;
      }
      s.pending.erase(0, start);
      if (s.pending.size() > (1 << 20)) {  // a megabyte without a newline: pass it on as it is
        emit(w, s, s.pending);
        s.pending.clear();
      }
    }
  }

  void close_stream(Worker& w, Stream& s) {
    if (s.fd < 0) return;
    if (!s.pending.empty()) emit(w, s, s.pending);
    s.pending.clear();
    close(s.fd);
    s.fd = -1;
  }

  const LaunchOptions& options_;
  const int attempt_;
  std::vector<Worker> workers_;
  bool stopping_ = false;
  bool killed_ = false;
  bool cleaned_ = false;
  int interrupted_by_ = 0;
  int failed_rank_ = -1;
  int failed_status_ = 0;
  Clock::time_point kill_deadline_{}, drain_deadline_{};
};

void install_signal_handlers() {
  if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    say(std::string("pipe: ") + strerror(errno));
    _exit(1);
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaction(sig, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Orphaned grandchildren of the workers are re-parented to us, so none escapes the cleanup.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
}

}  // namespace

int run_workers(const LaunchOptions& options) {
  install_signal_handlers();
  const int world = options.nnodes * options.nproc_per_node;
  say("node " + std::to_string(options.node_rank) + "/" + std::to_string(options.nnodes) +
      ": starting ranks " + std::to_string(options.node_rank * options.nproc_per_node) + ".." +
      std::to_string(options.node_rank * options.nproc_per_node + options.nproc_per_node - 1) +
      " of " + std::to_string(world) + " (master " + options.master_addr + ":" +
      std::to_string(options.master_port) + ")");
  for (int attempt = 0;; ++attempt) {
    Group group(options, attempt);
    const Group::Result result = group.run();
    if (result.success) return 0;
    if (result.interrupted_by != 0) {
      say(std::string("stopped by ") + strsignal(result.interrupted_by));
      return 128 + result.interrupted_by;
    }
    const std::string failure =
        "rank " + std::to_string(result.failed_rank) + " " + describe_status(result.failed_status);
    if (attempt < options.max_restarts) {
      say(failure + "; restarting the worker group (restart " + std::to_string(attempt + 1) +
          " of " + std::to_string(options.max_restarts) +
          "), which resumes from the latest checkpoint");
      continue;
    }
    std::string where = "see the lines prefixed [rank" + std::to_string(result.failed_rank) + "]";
    if (!options.log_dir.empty()) {
      where += " or " + options.log_dir + "/attempt_" + std::to_string(attempt) + "/rank_" +
               std::to_string(result.failed_rank) + ".log";
    }
    say("failed: " + failure + (options.max_restarts > 0 ? " and no restarts are left" : "") +
        " (" + where + ")");
    return exit_code_of(result.failed_status);
  }
}

}  // namespace polar::dist
