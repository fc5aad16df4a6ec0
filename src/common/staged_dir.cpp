#include "polar/common/staged_dir.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "polar/common/error.h"

namespace fs = std::filesystem;

namespace polar {

StagedDir::StagedDir(std::string output, std::string staging) : output_(std::move(output)) {
  POLAR_CHECK(!output_.empty(), "staged directory: empty output path");
  while (output_.size() > 1 && output_.back() == '/') output_.pop_back();
  std::error_code ec;
  if (staging.empty()) {
    staging_ = output_ + ".tmp-" + std::to_string(::getpid());
    fs::remove_all(staging_, ec);
  } else {
    staging_ = std::move(staging);
  }
  fs::create_directories(staging_, ec);
  POLAR_CHECK(!ec, staging_, ": cannot create directory: ", ec.message());
}

StagedDir::~StagedDir() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

void StagedDir::commit() {
  std::error_code ec;
  const std::string old = output_ + ".old-" + std::to_string(::getpid());
  const bool replacing = fs::exists(output_);
  if (replacing) {
    fs::remove_all(old, ec);
    fs::rename(output_, old, ec);
    POLAR_CHECK(!ec, output_, ": cannot move the previous one aside: ", ec.message());
  }
  fs::rename(staging_, output_, ec);
  if (ec) {
    const std::string reason = ec.message();
    if (replacing) fs::rename(old, output_, ec);
    throw Error(output_ + ": cannot rename " + staging_ + " into place: " + reason);
  }
  committed_ = true;
  if (replacing) fs::remove_all(old, ec);
}

}  // namespace polar
