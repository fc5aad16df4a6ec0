// One targeted test per validation rule of parse_safetensors, on hand-built file images: each bad
// image must be refused with polar::Error naming the file and the problem.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "polar/common/error.h"
#include "polar/io/safetensors_format.h"
#include "safetensors_corruption.h"

namespace polar::io {
namespace {

using ::testing::HasSubstr;
using testing::make_safetensors_image;
using ::testing::StartsWith;

const char* kWhere = "bad.safetensors";

std::string parse_image(const std::string& image, std::vector<TensorInfo>* out = nullptr,
                        std::map<std::string, std::string>* meta = nullptr) {
  try {
    auto tensors = parse_safetensors(reinterpret_cast<const uint8_t*>(image.data()), image.size(),
                                     kWhere, meta);
    if (out) *out = tensors;
  } catch (const Error& e) {
    return e.what();
  }
  return "<accepted>";
}

std::string parse_header(const std::string& header, const std::string& data = "") {
  return parse_image(make_safetensors_image(header, data));
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":" + dtype + ",\"shape\":" + shape +
         ",\"data_offsets\":" + offsets + "}";
}

#define EXPECT_REFUSED(message, substring)                     \
  do {                                                         \
    const std::string msg_ = (message);                        \
    EXPECT_THAT(msg_, StartsWith(std::string(kWhere) + ": ")); \
    EXPECT_THAT(msg_, HasSubstr(substring));                   \
  } while (0)

TEST(SafetensorsValidation, AcceptsEmptyFileAndZeroSizeTensorsSharingOffsets) {
  EXPECT_EQ(parse_header("{}"), "<accepted>");
  EXPECT_EQ(parse_header("{}      "), "<accepted>");
  std::vector<TensorInfo> tensors;
  const std::string header = "{" + entry("z", "\"F32\"", "[0,3]", "[4,4]") + "," +
                             entry("a", "\"U8\"", "[4]", "[0,4]") + "," +
                             entry("s", "\"I16\"", "[]", "[4,6]") + "," +
                             entry("y", "\"BF16\"", "[0]", "[0,0]") + "}";
  EXPECT_EQ(parse_image(make_safetensors_image(header, "abcdef"), &tensors), "<accepted>");
  ASSERT_EQ(tensors.size(), 4u);
  // Sorted by offset, zero-size ones where they sit.
  EXPECT_EQ(tensors[0].name, "y");
  EXPECT_EQ(tensors[1].name, "a");
  EXPECT_EQ(tensors[2].name, "z");
  EXPECT_EQ(tensors[3].name, "s");
  EXPECT_TRUE(tensors[3].shape.empty());
}

TEST(SafetensorsValidation, ShortFile) {
  EXPECT_REFUSED(parse_image(""), "0 bytes, shorter than the 8-byte header length prefix");
  EXPECT_REFUSED(parse_image(std::string("\x02\0\0\0\0", 5)), "5 bytes, shorter than the 8-byte");
}

TEST(SafetensorsValidation, HeaderLengthBoundAndPastEnd) {
  std::string image = make_safetensors_image("{}", "");
  image[0] = '\x01', image[1] = '\xE1', image[2] = '\xF5', image[3] = '\x05';  // 100000001
  EXPECT_REFUSED(parse_image(image),
                 "header length 100000001 exceeds the limit of 100000000 bytes");
  image.replace(0, 8, std::string(8, '\xFF'));
  EXPECT_REFUSED(parse_image(image), "exceeds the limit");
  image.replace(0, 8, std::string("\x03\0\0\0\0\0\0\0", 8));
  EXPECT_REFUSED(parse_image(image), "header length 3 runs past the end of the file (10 bytes");
}

TEST(SafetensorsValidation, InvalidJson) {
  EXPECT_REFUSED(parse_header("{\"a\":"), "header: invalid JSON");
  EXPECT_REFUSED(parse_header(""), "invalid JSON");
  EXPECT_REFUSED(parse_header("{} x"), "invalid JSON");
  EXPECT_REFUSED(parse_header("{\"\xFF\":1}"), "invalid JSON");  // not UTF-8
  EXPECT_REFUSED(parse_header(std::string("{}\0", 3)), "invalid JSON");
  EXPECT_REFUSED(parse_header(std::string(100000, '[')), "nesting deeper than 16 levels");
}

TEST(SafetensorsValidation, HeaderNotAnObject) {
  EXPECT_REFUSED(parse_header("[1,2]"), "header must be a JSON object, got array");
  EXPECT_REFUSED(parse_header("\"x\""), "got string");
}

TEST(SafetensorsValidation, EntryNotAnObject) {
  EXPECT_REFUSED(parse_header("{\"w\":3}"), "tensor 'w': entry must be an object");
  EXPECT_REFUSED(parse_header("{\"w\":[\"F32\",[1],[0,4]]}", "abcd"), "entry must be an object");
  EXPECT_REFUSED(parse_header("{\"w\":{\"dtype\":\"U8\",\"shape\":[]}}", "a"),
                 "tensor 'w': missing key \"data_offsets\"");
  EXPECT_REFUSED(
      parse_header("{" + entry("w", "\"U8\"", "[]", "[0,1]").insert(5, "\"x\":1,") + "}", "a"),
      "unexpected key 'x'");
}

TEST(SafetensorsValidation, UnknownDtype) {
  EXPECT_REFUSED(
      parse_header("{" + entry("w", "\"F128\"", "[1]", "[0,16]") + "}", std::string(16, 'x')),
      "tensor 'w': unknown dtype 'F128' (expected one of F64 F32");
  EXPECT_REFUSED(parse_header("{" + entry("w", "\"f32\"", "[1]", "[0,4]") + "}", "abcd"),
                 "unknown dtype 'f32'");
  EXPECT_REFUSED(parse_header("{" + entry("w", "4", "[1]", "[0,4]") + "}", "abcd"),
                 "dtype must be a string");
}

TEST(SafetensorsValidation, ShapeNotNonNegativeIntegers) {
  for (const char* shape : {"[-1]", "[1.5]", "[\"2\"]", "[[1]]", "[null]", "[1e3]"})
    EXPECT_REFUSED(parse_header("{" + entry("w", "\"U8\"", shape, "[0,1]") + "}", "a"),
                   "tensor 'w': shape must be a list of non-negative integers");
  EXPECT_REFUSED(parse_header("{" + entry("w", "\"U8\"", "3", "[0,3]") + "}", "abc"),
                 "shape must be a list of non-negative integers, got number");
  EXPECT_REFUSED(
      parse_header("{" + entry("w", "\"U8\"", "[18446744073709551616]", "[0,1]") + "}", "a"),
      "shape must be a list");  // beyond u64: parsed as a float
  EXPECT_REFUSED(
      parse_header("{" + entry("w", "\"U8\"", "[9223372036854775808]", "[0,1]") + "}", "a"),
      "does not fit a signed 64-bit size");
}

TEST(SafetensorsValidation, ElementCountOverflow) {
  EXPECT_REFUSED(
      parse_header("{" + entry("w", "\"U8\"", "[4294967296,4294967296,4294967296]", "[0,1]") + "}",
                   "a"),
      "element count of shape [4294967296,4294967296,4294967296] overflows 64 bits");
  EXPECT_REFUSED(parse_header("{" + entry("w", "\"F64\"", "[4611686018427387904]", "[0,8]") + "}",
                              std::string(8, 'x')),
                 "byte size of shape [4611686018427387904] x 8 bytes overflows 64 bits");
  // A zero dimension first keeps the running product at 0, as in the reference implementation.
  EXPECT_EQ(parse_header(
                "{" + entry("w", "\"U8\"", "[0,4294967296,4294967296,4294967296]", "[0,0]") + "}"),
            "<accepted>");
}

TEST(SafetensorsValidation, DataOffsetsNotTwoOrderedIntegers) {
  for (const char* off : {"[0]", "[0,4,4]", "[0,\"4\"]", "[-1,3]", "[0,4.0]", "{}", "null"})
    EXPECT_REFUSED(parse_header("{" + entry("w", "\"U8\"", "[4]", off) + "}", "abcd"),
                   "tensor 'w': data_offsets must be two non-negative integers [begin, end]");
  EXPECT_REFUSED(parse_header("{" + entry("w", "\"U8\"", "[0]", "[4,0]") + "}", "abcd"),
                 "data_offsets [4, 0] has begin > end");
}

TEST(SafetensorsValidation, ByteLengthMismatch) {
  EXPECT_REFUSED(parse_header("{" + entry("w", "\"F32\"", "[2]", "[0,4]") + "}", "abcd"),
                 "tensor 'w': data_offsets [0, 4] span 4 bytes but shape [2] of F32 needs 8 bytes");
}

TEST(SafetensorsValidation, OffsetsBeyondDataSection) {
  EXPECT_REFUSED(parse_header("{" + entry("w", "\"F32\"", "[2]", "[0,8]") + "}", "abcd"),
                 "tensor 'w': data_offsets [0, 8] reach beyond the data section of 4 bytes");
  EXPECT_REFUSED(
      parse_header(
          "{" + entry("w", "\"U8\"", "[0]", "[18446744073709551615,18446744073709551615]") + "}"),
      "reach beyond the data section of 0 bytes");
}

TEST(SafetensorsValidation, OverlappingOffsets) {
  const std::string header = "{" + entry("a", "\"F32\"", "[2]", "[0,8]") + "," +
                             entry("b", "\"F32\"", "[2]", "[4,12]") + "}";
  EXPECT_REFUSED(parse_header(header, std::string(12, 'x')),
                 "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]");
  const std::string same =
      "{" + entry("a", "\"U8\"", "[4]", "[0,4]") + "," + entry("b", "\"U8\"", "[4]", "[0,4]") + "}";
  EXPECT_REFUSED(parse_header(same, "abcd"), "overlap tensor 'a'");
  // A zero-size tensor inside another one is an overlap too.
  const std::string inside =
      "{" + entry("a", "\"U8\"", "[4]", "[0,4]") + "," + entry("z", "\"U8\"", "[0]", "[2,2]") + "}";
  EXPECT_REFUSED(parse_header(inside, "abcd"), "tensor 'z': data_offsets [2, 2] overlap");
}

TEST(SafetensorsValidation, HolesAndUncoveredBytes) {
  const std::string header = "{" + entry("a", "\"U8\"", "[4]", "[0,4]") + "," +
                             entry("b", "\"U8\"", "[4]", "[8,12]") + "}";
  EXPECT_REFUSED(parse_header(header, std::string(12, 'x')),
                 "tensor 'b': data_offsets [8, 12] leave a hole: bytes [4, 8) of the data section "
                 "belong to no tensor");
  EXPECT_REFUSED(
      parse_header("{" + entry("b", "\"U8\"", "[4]", "[2,6]") + "}", std::string(6, 'x')),
      "leave a hole");
  EXPECT_REFUSED(
      parse_header("{" + entry("a", "\"U8\"", "[4]", "[0,4]") + "}", std::string(7, 'x')),
      "data section has 3 trailing bytes [4, 7) not covered by any tensor");
  EXPECT_REFUSED(parse_header("{}", "x"), "data section has 1 trailing bytes");
}

TEST(SafetensorsValidation, DuplicateKeys) {
  const std::string a = entry("a", "\"U8\"", "[1]", "[0,1]");
  EXPECT_REFUSED(parse_header("{" + a + "," + a + "}", "x"), "duplicate key 'a'");
  EXPECT_REFUSED(
      parse_header(
          "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "x"),
      "duplicate key 'dtype'");
  EXPECT_REFUSED(parse_header("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}"), "duplicate key 'k'");
  EXPECT_REFUSED(parse_header("{\"__metadata__\":{},\"__metadata__\":{}}"),
                 "duplicate key '__metadata__'");
}

TEST(SafetensorsValidation, Metadata) {
  std::map<std::string, std::string> meta;
  EXPECT_EQ(
      parse_image(make_safetensors_image("{\"__metadata__\":{\"format\":\"pt\",\"b\":\"\"}}", ""),
                  nullptr, &meta),
      "<accepted>");
  EXPECT_EQ(meta, (std::map<std::string, std::string>{{"format", "pt"}, {"b", ""}}));
  EXPECT_REFUSED(parse_header("{\"__metadata__\":{\"k\":1}}"),
                 "__metadata__ value for key 'k' must be a string, got number");
  EXPECT_REFUSED(parse_header("{\"__metadata__\":{\"k\":null}}"), "must be a string, got null");
  EXPECT_REFUSED(parse_header("{\"__metadata__\":[\"k\"]}"),
                 "__metadata__ must be an object of strings, got array");
}

TEST(SafetensorsValidation, LongNamesAreCutInMessages) {
  const std::string name(10000, 'n');
  const std::string msg = parse_header("{" + entry(name, "\"F128\"", "[1]", "[0,1]") + "}", "x");
  EXPECT_REFUSED(msg, "unknown dtype");
  EXPECT_LT(msg.size(), 500u);
}

TEST(SafetensorsFormat, EncodedHeaderIsPaddedAndParsesBack) {
  const std::vector<TensorInfo> infos = {
      {"a", "F32", {2}, 0, 8}, {"s", "BF16", {}, 8, 10}, {"z", "U8", {0, 2}, 10, 10}};
  const std::string header = encode_safetensors_header(infos, {{"format", "pt"}});
  ASSERT_GE(header.size(), 8u);
  EXPECT_EQ((header.size() - 8) % 8, 0u);
  EXPECT_EQ(header.substr(8, 16), "{\"__metadata__\":");
  std::vector<TensorInfo> back;
  EXPECT_EQ(parse_image(header + std::string(10, 'd'), &back), "<accepted>");
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[1].name, "s");
  EXPECT_EQ(back[1].dtype, "BF16");
  EXPECT_EQ(back[2].shape, (std::vector<int64_t>{0, 2}));
  EXPECT_THROW((encode_safetensors_header({{"a", "F32", {}, 0, 4}, {"a", "F32", {}, 4, 8}}, {})),
               Error);
  EXPECT_THROW((encode_safetensors_header({{"__metadata__", "F32", {}, 0, 4}}, {})), Error);
  EXPECT_THROW((encode_safetensors_header({{"bad\xFF", "F32", {}, 0, 4}}, {})), Error);
}

}  // namespace
}  // namespace polar::io
