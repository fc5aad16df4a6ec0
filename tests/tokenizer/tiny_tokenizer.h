// Test helpers shared by the tokenizer and data suites: a scratch directory under /tmp and a tiny
// tokenizer trained once per test process on a generated corpus.
#pragma once

#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "polar/tokenizer/tokenizer.h"

namespace polar_test {

// std::filesystem::remove_all is avoided: libtorch.so exports a copy that crashes.
inline void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  ::nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int flag, struct FTW*) {
        return flag == FTW_DP ? ::rmdir(p) : ::unlink(p);
      },
      16, FTW_DEPTH | FTW_PHYS);
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/polar-test-XXXXXX";
    const char* made = ::mkdtemp(tmpl);
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() { remove_tree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.good()) throw std::runtime_error("cannot write " + path);
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A few hundred lines over a small alphabet, so a 400-piece vocabulary has room for merges.
inline std::string tiny_corpus() {
  static const char* words[] = {"the",   "capital",  "of",       "China", "is",     "Beijing",
                                "not",   "Shanghai", "policy",   "says",  "prompt", "reward",
                                "model", "answer",   "question", "a",     "good",   "bad"};
  std::ostringstream os;
  uint32_t state = 12345;
  for (int line = 0; line < 300; ++line) {
    for (int w = 0; w < 8; ++w) {
      state = state * 1103515245u + 12345u;
      os << words[(state >> 16) % (sizeof(words) / sizeof(words[0]))] << (w == 7 ? "" : " ");
    }
    os << (line % 3 == 0 ? ". " : ", ") << line * 7 << "\n";
  }
  return os.str();
}

inline const std::string& tiny_tokenizer_dir() {
  static TempDir dir;
  static const std::string path = [] {
    write_text(dir.file("corpus.txt"), tiny_corpus());
    polar::TokenizerTrainOptions options;
    options.inputs = {dir.file("corpus.txt")};
    options.vocab_size = 400;
    options.output_dir = dir.file("tok");
    polar::train_tokenizer(options);
    return dir.file("tok");
  }();
  return path;
}

inline const polar::Tokenizer& tiny_tokenizer() {
  static const polar::Tokenizer tok = polar::Tokenizer::load(tiny_tokenizer_dir());
  return tok;
}

}  // namespace polar_test
