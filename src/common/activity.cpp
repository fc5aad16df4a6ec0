#include "polar/common/activity.h"

#include <exception>
#include <vector>

namespace polar {

namespace {
thread_local std::vector<std::string> t_stack;
thread_local std::string t_failed;
}  // namespace

Activity::Activity(std::string what) : uncaught_(std::uncaught_exceptions()) {
  if (t_stack.empty()) t_failed.clear();  // a new top-level activity starts afresh
  t_stack.push_back(std::move(what));
}

Activity::~Activity() {
  // Left by an exception: keep the innermost chain (the first scope to unwind sees all of it).
  if (std::uncaught_exceptions() > uncaught_ && t_failed.empty()) {
    for (const auto& a : t_stack) t_failed += (t_failed.empty() ? "" : ": ") + a;
  }
  t_stack.pop_back();
}

std::string Activity::failed() { return t_failed; }

}  // namespace polar
