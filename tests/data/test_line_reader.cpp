// LineReader (plain, gzip with several members, zstd; long lines, CRLF, no final newline,
// truncated streams) and input pattern expansion.
#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include "../tokenizer/tiny_tokenizer.h"
#include "polar/common/error.h"
#include "polar/data/line_reader.h"

namespace polar {
namespace {

using polar_test::TempDir;
using polar_test::write_text;

std::vector<std::string> read_all(const std::string& path) {
  LineReader reader(path);
  std::vector<std::string> lines;
  std::string line;
  while (reader.next(line)) {
    lines.push_back(line);
    EXPECT_EQ(reader.line_number(), static_cast<int64_t>(lines.size()));
  }
  return lines;
}

std::string gzip_member(const std::string& text) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, text.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string zstd_frame(const std::string& text) {
  std::string out(ZSTD_compressBound(text.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 1);
  out.resize(n);
  return out;
}

TEST(LineReader, PlainGzipAndZstdGiveTheSameLines) {
  TempDir dir;
  const std::string long_line(3 << 20, 'x');  // longer than a read block
  const std::string text = "first\r\n\nsecond line\n" + long_line + "\nlast without newline";
  const std::vector<std::string> expected = {"first\r", "", "second line", long_line,
                                             "last without newline"};
  write_text(dir.file("a.jsonl"), text);
  write_text(dir.file("a.jsonl.gz"), gzip_member(text.substr(0, 9)) + gzip_member(text.substr(9)));
  write_text(dir.file("a.jsonl.zst"),
             zstd_frame(text.substr(0, 100)) + zstd_frame(text.substr(100)));
  write_text(dir.file("plain-named.gz"), text);  // told apart by content, not by name
  for (const char* name : {"a.jsonl", "a.jsonl.gz", "a.jsonl.zst", "plain-named.gz"}) {
    EXPECT_EQ(read_all(dir.file(name)), expected) << name;
  }
  write_text(dir.file("empty.jsonl"), "");
  EXPECT_TRUE(read_all(dir.file("empty.jsonl")).empty());
}

TEST(LineReader, TruncatedOrCorruptStreamsAreErrorsNamingTheFile) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "line " + std::to_string(i * 7919) + "\n";
  const std::string gz = gzip_member(text), zst = zstd_frame(text);
  write_text(dir.file("cut.gz"), gz.substr(0, gz.size() - 10));
  write_text(dir.file("cut.zst"), zst.substr(0, zst.size() - 10));
  // zstd frames carry no checksum by default, so corruption shows in the headers: invalid from
  // byte 4.
  const std::string bad = zst.substr(0, 4) + std::string(zst.size() - 4, '\xff');
  write_text(dir.file("bad.zst"), bad);
  for (const char* name : {"cut.gz", "cut.zst", "bad.zst"}) {
    try {
      read_all(dir.file(name));
      ADD_FAILURE() << name << ": expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(LineReader(dir.file("missing.jsonl")), Error);
}

TEST(LineReader, PatternsExpandSortedWithoutRepeats) {
  TempDir dir;
  for (const char* name : {"b.jsonl", "a.jsonl", "c.jsonl.zst", "notes.txt"})
    write_text(dir.file(name), "{}\n");
  const auto files = expand_input_patterns({dir.file("*.jsonl*"), dir.file("a.jsonl")});
  EXPECT_EQ(files, (std::vector<std::string>{dir.file("a.jsonl"), dir.file("b.jsonl"),
                                             dir.file("c.jsonl.zst")}));
  EXPECT_THROW(expand_input_patterns({dir.file("*.parquet")}), Error);
  EXPECT_THROW(expand_input_patterns({dir.path()}), Error);  // a directory is not an input file
  EXPECT_EQ(total_file_bytes(files), 9);
}

}  // namespace
}  // namespace polar
