// kill_point: see polar/common/kill_point.h.
#include "polar/common/kill_point.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace polar {
namespace {

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

}  // namespace

void kill_point(const char* name) {
  const std::string spec = env_or_empty("POLAR_KILL_AT");
  if (spec.empty()) return;
  const size_t at = spec.find('@');
  if (spec.substr(0, at) != name) return;
  const std::string rank = env_or_empty("POLAR_KILL_RANK");
  if (!rank.empty() && rank != env_or_empty("RANK")) return;
  const std::string round = env_or_empty("TORCHELASTIC_RESTART_COUNT");
  if (!round.empty() && round != "0") return;
  const long wanted = at == std::string::npos ? 1 : std::strtol(spec.c_str() + at + 1, nullptr, 10);
  static std::mutex mutex;
  static std::map<std::string, long> reached;
  std::lock_guard<std::mutex> lock(mutex);
  if (++reached[name] != wanted) return;
  ::kill(::getpid(), SIGKILL);
  ::pause();  // the signal is delivered before kill() returns; never reached
}

}  // namespace polar
