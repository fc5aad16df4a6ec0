// A directory written under a temporary name and swapped into place, so that a reader never sees
// a half-written OUTPUT and an error leaves the previous one intact:
//   StagedDir staged(output);          // creates OUTPUT.tmp-<pid> (or uses `staging`)
//   write files into staged.path();
//   staged.commit();                   // OUTPUT -> OUTPUT.old-<pid>, staging -> OUTPUT, old
//   removed
// If the final rename fails, the previous OUTPUT is put back. Destroyed before commit() (an
// error), the staging directory is removed and OUTPUT is untouched.
#pragma once

#include <string>

namespace polar {

class StagedDir {
 public:
  // `staging`: an existing directory to fill instead of OUTPUT.tmp-<pid> (several processes
  // writing one checkpoint share it); it is created if missing and removed on failure all the same.
  explicit StagedDir(std::string output, std::string staging = {});
  ~StagedDir();
  StagedDir(const StagedDir&) = delete;
  StagedDir& operator=(const StagedDir&) = delete;

  const std::string& path() const { return staging_; }  // where to write
  const std::string& output() const { return output_; }
  void commit();

 private:
  std::string output_, staging_;
  bool committed_ = false;
};

}  // namespace polar
