// Streaming line input for large JSONL corpora: plain, gzip (.gz) or zstd (.zst) files, told apart
// by their leading magic bytes, decompressed on the fly in fixed-size blocks so memory does not
// grow with the file. Also expands input patterns (shell globs) to a sorted list of files.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace polar {

class LineReader {
 public:
  explicit LineReader(const std::string& path);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Next line without its "\n" (a trailing "\r" is kept for the record parser); false at the end.
  // Throws polar::Error("FILE: ...") on a read or decompression error, or a truncated stream.
  bool next(std::string& line);
  int64_t line_number() const { return line_no_; }  // of the line last returned, from 1
  int64_t file_bytes_read() const;  // bytes of the file consumed so far (for progress)
  const std::string& path() const { return path_; }

  class Decoder;  // plain copy, zlib or zstd

 private:
  bool fill();  // appends decoded bytes to buf_; false at the end of the stream
  std::string path_;
  std::FILE* file_ = nullptr;
  std::unique_ptr<Decoder> decoder_;
  std::string buf_;
  size_t pos_ = 0;
  int64_t line_no_ = 0;
  bool eof_ = false;
};

// Each pattern is a file or a glob ("data/*.jsonl.zst"); every pattern must match at least one
// regular file. Returns the files sorted and without repeats (a file listed twice is read once).
std::vector<std::string> expand_input_patterns(const std::vector<std::string>& patterns);

// Sum of the files' sizes on disk (compressed size for compressed files).
int64_t total_file_bytes(const std::vector<std::string>& files);

}  // namespace polar
