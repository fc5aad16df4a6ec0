// What the process is doing, for errors that do not say it themselves (LibTorch's, out of
// memory): scopes nest ("training step 12: saving runs/x/checkpoint-12"), and the chain that an
// exception left is kept for the message printed at the command boundary.
#pragma once

#include <string>

namespace polar {

class Activity {
 public:
  explicit Activity(std::string what);
  ~Activity();
  Activity(const Activity&) = delete;
  Activity& operator=(const Activity&) = delete;

  // The chain of activities the most recent exception of this thread left, or "".
  static std::string failed();

 private:
  int uncaught_;
};

}  // namespace polar
