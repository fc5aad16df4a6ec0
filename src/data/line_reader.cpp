// LineReader: reads a file in 1 MiB blocks, decodes them (copy, zlib or zstd) and splits lines.
#include "polar/data/line_reader.h"

#include <glob.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "polar/common/error.h"

namespace polar {

namespace {

constexpr size_t kBlockBytes = 1 << 20;

}  // namespace

// Reads raw bytes from the file and turns them into decoded bytes appended to `out`.
class LineReader::Decoder {
 public:
  Decoder(std::FILE* file, std::string path)
      : file_(file), path_(std::move(path)), in_(kBlockBytes, '\0') {}
  virtual ~Decoder() = default;
  // Appends some decoded bytes; returns false once the stream is fully decoded.
  virtual bool decode(std::string& out) = 0;
  int64_t consumed() const { return consumed_; }

 protected:
  // Refills in_ when it is used up; returns false at the end of the file.
  bool refill() {
    if (in_pos_ < in_len_) return true;
    in_len_ = std::fread(in_.data(), 1, in_.size(), file_);
    in_pos_ = 0;
    consumed_ += static_cast<int64_t>(in_len_);
    POLAR_CHECK(!std::ferror(file_), path_, ": read error: ", std::strerror(errno));
    return in_len_ > 0;
  }
  std::FILE* file_;
  std::string path_;
  std::string in_;
  size_t in_pos_ = 0, in_len_ = 0;
  int64_t consumed_ = 0;
};

namespace {

class PlainDecoder : public LineReader::Decoder {
 public:
  using Decoder::Decoder;
  bool decode(std::string& out) override {
    if (!refill()) return false;
    out.append(in_.data() + in_pos_, in_len_ - in_pos_);
    in_pos_ = in_len_;
    return true;
  }
};

// gzip, including several concatenated members (as `cat a.gz b.gz` or pigz write).
class GzipDecoder : public LineReader::Decoder {
 public:
  GzipDecoder(std::FILE* file, std::string path) : Decoder(file, std::move(path)) {
    std::memset(&z_, 0, sizeof(z_));
    POLAR_CHECK(inflateInit2(&z_, 15 + 32) == Z_OK, path_, ": cannot start the gzip decoder");
  }
  ~GzipDecoder() override { inflateEnd(&z_); }
  bool decode(std::string& out) override {
    const bool input = refill();  // without input, zlib may still hold output of the last block
    if (!input && member_done_) return false;
    if (member_done_) {
      POLAR_CHECK(inflateReset(&z_) == Z_OK, path_, ": gzip decoder reset failed");
      member_done_ = false;
    }
    const size_t start = out.size();
    out.resize(start + kBlockBytes);
    z_.next_in = reinterpret_cast<Bytef*>(in_.data() + in_pos_);
    z_.avail_in = static_cast<uInt>(in_len_ - in_pos_);
    z_.next_out = reinterpret_cast<Bytef*>(out.data() + start);
    z_.avail_out = static_cast<uInt>(kBlockBytes);
    const int rc = inflate(&z_, Z_NO_FLUSH);
    POLAR_CHECK(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR, path_,
                ": corrupt gzip data (", z_.msg ? z_.msg : "zlib error", ")");
    in_pos_ = in_len_ - z_.avail_in;
    const size_t produced = kBlockBytes - z_.avail_out;
    out.resize(start + produced);
    if (rc == Z_STREAM_END) member_done_ = true;
    POLAR_CHECK(input || produced > 0 || member_done_, path_,
                ": truncated gzip stream (the file ends inside compressed data)");
    return true;
  }

 private:
  z_stream z_;
  bool member_done_ = false;
};

class ZstdDecoder : public LineReader::Decoder {
 public:
  ZstdDecoder(std::FILE* file, std::string path)
      : Decoder(file, std::move(path)), ctx_(ZSTD_createDCtx()) {
    POLAR_CHECK(ctx_ != nullptr, path_, ": cannot start the zstd decoder");
  }
  ~ZstdDecoder() override { ZSTD_freeDCtx(ctx_); }
  bool decode(std::string& out) override {
    const bool input = refill();  // without input, zstd may still hold output of the last block
    if (!input && last_ == 0) return false;
    const size_t start = out.size();
    out.resize(start + kBlockBytes);
    ZSTD_inBuffer in{in_.data(), in_len_, in_pos_};
    ZSTD_outBuffer o{out.data() + start, kBlockBytes, 0};
    last_ = ZSTD_decompressStream(ctx_, &o, &in);
    POLAR_CHECK(!ZSTD_isError(last_), path_, ": corrupt zstd data (", ZSTD_getErrorName(last_),
                ")");
    in_pos_ = in.pos;
    out.resize(start + o.pos);
    POLAR_CHECK(input || o.pos > 0 || last_ == 0, path_,
                ": truncated zstd stream (the file ends inside a frame)");
    return true;
  }

 private:
  ZSTD_DCtx* ctx_;
  size_t last_ = 0;
};

}  // namespace

LineReader::LineReader(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "rb");
  POLAR_CHECK(file_ != nullptr, path, ": cannot open file: ", std::strerror(errno));
  unsigned char magic[4] = {0, 0, 0, 0};
  const size_t n = std::fread(magic, 1, 4, file_);
  std::rewind(file_);
  if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
    decoder_ = std::make_unique<GzipDecoder>(file_, path);
  } else if (n == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f &&
             magic[3] == 0xfd) {
    decoder_ = std::make_unique<ZstdDecoder>(file_, path);
  } else {
    decoder_ = std::make_unique<PlainDecoder>(file_, path);
  }
}

LineReader::~LineReader() {
  decoder_.reset();
  if (file_) std::fclose(file_);
}

int64_t LineReader::file_bytes_read() const { return decoder_->consumed(); }

bool LineReader::fill() {
  if (pos_ > 0) {  // drop the lines already returned before appending more
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  const size_t before = buf_.size();
  while (buf_.size() == before) {
    if (!decoder_->decode(buf_)) return false;
  }
  return true;
}

bool LineReader::next(std::string& line) {
  size_t scan_from = pos_;
  for (;;) {
    const size_t nl = buf_.find('\n', scan_from);
    if (nl != std::string::npos) {
      line.assign(buf_, pos_, nl - pos_);
      pos_ = nl + 1;
      ++line_no_;
      return true;
    }
    const size_t scanned = buf_.size() - pos_;  // unread bytes already searched for a newline
    if (eof_ || !fill()) {
      eof_ = true;
      if (pos_ >= buf_.size()) return false;
      line.assign(buf_, pos_, std::string::npos);  // last line without a newline
      pos_ = buf_.size();
      ++line_no_;
      return true;
    }
    scan_from = scanned;  // fill() moved the unread tail to the front
  }
}

std::vector<std::string> expand_input_patterns(const std::vector<std::string>& patterns) {
  std::vector<std::string> files;
  for (const auto& pattern : patterns) {
    glob_t g{};
    const int rc = ::glob(pattern.c_str(), GLOB_ERR, nullptr, &g);
    size_t matched = 0;
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) {
      struct stat st {};
      if (::stat(g.gl_pathv[i], &st) == 0 && S_ISREG(st.st_mode)) {
        files.emplace_back(g.gl_pathv[i]);
        ++matched;
      }
    }
    globfree(&g);
    POLAR_CHECK(matched > 0, pattern, ": no such file (or the pattern matches no regular file)");
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  return files;
}

int64_t total_file_bytes(const std::vector<std::string>& files) {
  int64_t total = 0;
  for (const auto& f : files) {
    struct stat st {};
    if (::stat(f.c_str(), &st) == 0) total += static_cast<int64_t>(st.st_size);
  }
  return total;
}

}  // namespace polar
