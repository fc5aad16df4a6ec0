// safetensors with torch: bit-exact round trips of every dtype (scalars, zero-size, non-contiguous
// inputs, unaligned data), the on-disk layout, file-level errors, atomic writes, and the sharded
// Hugging Face layout with its index validation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "polar/common/error.h"
#include "polar/io/safetensors.h"
#include "safetensors_corruption.h"
#include "safetensors_test_util.h"

namespace polar::io {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::random_bytes_tensor;
using testing::read_file_bytes;
using testing::TempDir;
using testing::tensor_bytes_of;
using testing::write_file_bytes;
using Named = std::vector<std::pair<std::string, torch::Tensor>>;

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

void expect_same(const torch::Tensor& got, const torch::Tensor& want, const std::string& name) {
  SCOPED_TRACE(name);
  EXPECT_EQ(got.scalar_type(), want.scalar_type());
  EXPECT_EQ(got.sizes(), want.sizes());
  EXPECT_TRUE(got.device().is_cpu());
  EXPECT_EQ(tensor_bytes_of(got), tensor_bytes_of(want));
}

Named every_dtype() {
  Named out;
  const std::pair<const char*, torch::ScalarType> dtypes[] = {
      {"F64", torch::kFloat64},        {"F32", torch::kFloat32},
      {"F16", torch::kFloat16},        {"BF16", torch::kBFloat16},
      {"I64", torch::kInt64},          {"I32", torch::kInt32},
      {"I16", torch::kInt16},          {"I8", torch::kInt8},
      {"U8", torch::kUInt8},           {"BOOL", torch::kBool},
      {"U16", torch::kUInt16},         {"U32", torch::kUInt32},
      {"U64", torch::kUInt64},         {"F8_E4M3", torch::kFloat8_e4m3fn},
      {"F8_E5M2", torch::kFloat8_e5m2}};
  uint64_t seed = 1;
  for (const auto& [name, dtype] : dtypes) {
    out.emplace_back(std::string(name) + ".matrix", random_bytes_tensor(dtype, {3, 5}, seed++));
    out.emplace_back(std::string(name) + ".scalar", random_bytes_tensor(dtype, {}, seed++));
    out.emplace_back(std::string(name) + ".empty", random_bytes_tensor(dtype, {0, 4}, seed++));
  }
  return out;
}

TEST(Safetensors, RoundTripsEveryDtypeBitExactInOrder) {
  TempDir dir;
  const Named tensors = every_dtype();
  save_safetensors(dir.file("all.safetensors"), tensors, {{"format", "pt"}, {"step", "12"}});
  const SafetensorsFile f = SafetensorsFile::open(dir.file("all.safetensors"));
  ASSERT_EQ(f.tensors().size(), tensors.size());
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"step", "12"}}));
  uint64_t previous_end = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    EXPECT_TRUE(f.contains(name));
    expect_same(f.tensor(name), t, name);
    EXPECT_EQ(f.info(name).begin, previous_end) << name << ": written in the given order";
    previous_end = f.info(name).end;
  }
  EXPECT_EQ(f.info("BF16.scalar").dtype, "BF16");
  EXPECT_TRUE(f.info("F32.scalar").shape.empty());
  EXPECT_EQ(f.tensor("I64.scalar").dim(), 0);
  EXPECT_FALSE(f.contains("nope"));
  const auto all = load_safetensors_any(dir.file("all.safetensors"));
  EXPECT_EQ(all.size(), tensors.size());
  for (const auto& [name, t] : tensors) expect_same(all.at(name), t, name);
}

TEST(Safetensors, LayoutMatchesTheReferenceWriter) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  save_safetensors(path, {{"w", torch::tensor({1.0f, -2.0f})}, {"b", torch::tensor(int64_t{7})}});
  const std::string bytes = read_file_bytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(n % 8, 0u) << "header padded so the data section is 8-aligned";
  EXPECT_EQ(bytes.size(), 8 + n + 16);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.find("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[8,16]}}"),
            0u);
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
  const float w1 = -2.0f;
  EXPECT_EQ(bytes.substr(8 + n + 4, 4), std::string(reinterpret_cast<const char*>(&w1), 4));
}

TEST(Safetensors, WritesContiguousCopiesOfViewsAndGradTensors) {
  TempDir dir;
  const torch::Tensor base = torch::arange(24, torch::kFloat32).reshape({4, 6});
  const torch::Tensor transposed = base.t();  // (6, 4), non-contiguous
  const torch::Tensor sliced =
      base.index({torch::indexing::Slice(), torch::indexing::Slice(1, 5, 2)});
  const torch::Tensor param = torch::ones({3}, torch::requires_grad());
  save_safetensors(dir.file("v.safetensors"), {{"t", transposed}, {"s", sliced}, {"p", param}});
  const SafetensorsFile f = SafetensorsFile::open(dir.file("v.safetensors"));
  EXPECT_TRUE(torch::equal(f.tensor("t"), transposed));
  EXPECT_TRUE(torch::equal(f.tensor("s"), sliced));
  EXPECT_TRUE(torch::equal(f.tensor("p"), param.detach()));
  EXPECT_FALSE(f.tensor("p").requires_grad());
}

TEST(Safetensors, ReadsUnalignedDataSection) {
  // A header of odd length puts every tensor at an unaligned address; reads must memcpy.
  TempDir dir;
  const torch::Tensor d = torch::tensor({1.5, -0.25, 1e300}, torch::kFloat64);
  const torch::Tensor i = torch::tensor({int64_t{-1}, int64_t{1} << 40}, torch::kInt64);
  std::vector<TensorInfo> infos = {{"d", "F64", {3}, 0, 24}, {"i", "I64", {2}, 24, 40}};
  std::string header = encode_safetensors_header(infos, {}).substr(8);
  header.erase(header.find_last_not_of(' ') + 1);
  if (header.size() % 2 == 0) header += " ";
  write_file_bytes(dir.file("u.safetensors"), testing::make_safetensors_image(
                                                  header, tensor_bytes_of(d) + tensor_bytes_of(i)));
  const SafetensorsFile f = SafetensorsFile::open(dir.file("u.safetensors"));
  EXPECT_TRUE(torch::equal(f.tensor("d"), d));
  EXPECT_TRUE(torch::equal(f.tensor("i"), i));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.tensor("d").data_ptr()) % 8, 0u);
}

TEST(Safetensors, FileLevelErrorsNameTheFile) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(dir.file("missing.safetensors")); }),
              HasSubstr("missing.safetensors: cannot open: No such file"));
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(dir.path.string()); }),
              HasSubstr("not a regular file"));
  write_file_bytes(dir.file("empty.safetensors"), "");
  EXPECT_THAT(
      error_of([&] { SafetensorsFile::open(dir.file("empty.safetensors")); }),
      HasSubstr(
          "empty.safetensors: file is 0 bytes, shorter than the 8-byte header length prefix"));
  write_file_bytes(dir.file("bad.safetensors"), testing::make_safetensors_image("{\"a\":1}", ""));
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(dir.file("bad.safetensors")); }),
              HasSubstr("bad.safetensors: tensor 'a': entry must be an object"));

  save_safetensors(dir.file("ok.safetensors"), {{"a", torch::zeros({2})}});
  const SafetensorsFile f = SafetensorsFile::open(dir.file("ok.safetensors"));
  EXPECT_THAT(error_of([&] { f.tensor("b"); }),
              HasSubstr("ok.safetensors: no tensor 'b' (the file holds 1 tensors)"));
}

TEST(Safetensors, RefusesBoolBytesOtherThanZeroOrOne) {
  TempDir dir;
  const std::string header = encode_safetensors_header({{"m", "BOOL", {3}, 0, 3}}, {}).substr(8);
  write_file_bytes(dir.file("b.safetensors"),
                   testing::make_safetensors_image(header, std::string("\x01\x00\x02", 3)));
  const SafetensorsFile f = SafetensorsFile::open(dir.file("b.safetensors"));
  EXPECT_THAT(error_of([&] { f.tensor("m"); }),
              HasSubstr("tensor 'm': BOOL element 2 is byte 2 (expected 0 or 1)"));
}

TEST(Safetensors, ZeroSizeShapeWithHugeDimensionsIsAnErrorNotACrash) {
  // Valid for the parser (element count 0), but torch cannot build the strides.
  TempDir dir;
  const std::string header =
      "{\"w\":{\"dtype\":\"U8\",\"shape\":[0,4611686018427387904,4611686018427387904],\"data_"
      "offsets\":[0,0]}}";
  write_file_bytes(dir.file("z.safetensors"), testing::make_safetensors_image(header, ""));
  const SafetensorsFile f = SafetensorsFile::open(dir.file("z.safetensors"));
  EXPECT_THAT(error_of([&] { f.tensor("w"); }),
              HasSubstr("z.safetensors: tensor 'w': cannot create a tensor of this shape"));
}

TEST(Safetensors, WriterRefusesBadInputAndLeavesNoPartialFile) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  save_safetensors(path, {{"old", torch::ones({2})}});
  const std::string before = read_file_bytes(path);
  EXPECT_THAT(error_of([&] {
                save_safetensors(path, {{"a", torch::ones({1})}, {"a", torch::ones({1})}});
              }),
              HasSubstr("w.safetensors: safetensors: duplicate tensor name 'a'"));
  EXPECT_THAT(error_of([&] {
                save_safetensors(path, {{"__metadata__", torch::ones({1})}});
              }),
              HasSubstr("may not be named \"__metadata__\""));
  EXPECT_THAT(error_of([&] {
                save_safetensors(path, {{"c", torch::ones({2}, torch::kComplexFloat)}});
              }),
              HasSubstr("tensor 'c': cannot write dtype ComplexFloat"));
  EXPECT_THAT(error_of([&] {
                save_safetensors(path, {{"u", torch::Tensor()}});
              }),
              HasSubstr("tensor 'u' is undefined"));
  EXPECT_THAT(error_of([&] { save_safetensors(dir.file("no/such/dir/x.safetensors"), {}); }),
              HasSubstr("cannot create a temporary file"));
  EXPECT_EQ(read_file_bytes(path), before) << "a failed save leaves the old file untouched";
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path))
    entries += e.path().filename() != "w.safetensors";
  EXPECT_EQ(entries, 0u) << "no temporary file left behind";
}

Named shard_tensors() {
  return {{"embed", torch::randn({8, 4})},                         // 128 bytes
          {"layer.0", torch::randn({4, 4}).to(torch::kBFloat16)},  // 32
          {"layer.1", torch::randn({4, 4}).to(torch::kBFloat16)},  // 32
          {"big", torch::randn({64})},                             // 256 > max: a shard of its own
          {"scalar", torch::tensor(int64_t{3})},                   // 8
          {"empty", torch::zeros({0, 2})}};                        // 0
}

TEST(SafetensorsSharded, SavesHuggingFaceLayoutAndLoadsItBack) {
  TempDir dir;
  const Named tensors = shard_tensors();
  save_safetensors_sharded(dir.path.string(), tensors, 160, {{"format", "pt"}});
  // Greedy in order: [embed, layer.0] 160 | [layer.1] (+big > 160) | [big] | [scalar, empty]
  const std::vector<std::string> files = {
      "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
      "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"};
  for (const auto& f : files) EXPECT_TRUE(fs::exists(dir.path / f)) << f;
  EXPECT_FALSE(fs::exists(dir.path / "model.safetensors"));
  const nlohmann::json index =
      nlohmann::json::parse(read_file_bytes(dir.file("model.safetensors.index.json")));
  EXPECT_EQ(index["metadata"]["total_size"], 128 + 32 + 32 + 256 + 8);
  EXPECT_EQ(index["weight_map"]["embed"], files[0]);
  EXPECT_EQ(index["weight_map"]["layer.0"], files[0]);
  EXPECT_EQ(index["weight_map"]["layer.1"], files[1]);
  EXPECT_EQ(index["weight_map"]["big"], files[2]);
  EXPECT_EQ(index["weight_map"]["empty"], files[3]);
  const SafetensorsFile first = SafetensorsFile::open(dir.file(files[0]));
  EXPECT_EQ(first.tensors()[0].name, "embed");
  EXPECT_EQ(first.metadata().at("format"), "pt");

  for (const std::string& path : {dir.path.string(), dir.file("model.safetensors.index.json")}) {
    const auto loaded = load_safetensors_any(path);
    ASSERT_EQ(loaded.size(), tensors.size());
    for (const auto& [name, t] : tensors) expect_same(loaded.at(name), t, name);
  }

  // Saving again under the limit switches to one file and removes the stale index.
  save_safetensors_sharded(dir.path.string(), tensors, 1 << 20);
  EXPECT_TRUE(fs::exists(dir.path / "model.safetensors"));
  EXPECT_FALSE(fs::exists(dir.path / "model.safetensors.index.json"));
  EXPECT_EQ(load_safetensors_any(dir.path.string()).size(), tensors.size());
  EXPECT_THAT(error_of([&] { save_safetensors_sharded(dir.path.string(), tensors, 0); }),
              HasSubstr("max_shard_bytes must be positive"));
}

TEST(SafetensorsSharded, ValidatesTheIndex) {
  TempDir dir;
  save_safetensors_sharded(dir.path.string(), shard_tensors(), 160);
  const std::string index_path = dir.file("model.safetensors.index.json");
  const nlohmann::json good = nlohmann::json::parse(read_file_bytes(index_path));
  auto load_with = [&](const nlohmann::json& index) {
    write_file_bytes(index_path, index.dump());
    return error_of([&] { load_safetensors_any(dir.path.string()); });
  };
  nlohmann::json j = good;
  j["weight_map"]["embed"] = "model-00009-of-00009.safetensors";
  EXPECT_THAT(
      load_with(j),
      HasSubstr("model.safetensors.index.json: weight_map names 'model-00009-of-00009.safetensors' "
                "(for tensor 'embed'), which does not exist"));
  j = good;
  j["weight_map"]["embed"] = "model-00002-of-00004.safetensors";
  EXPECT_THAT(
      load_with(j),
      HasSubstr("'model-00001-of-00004.safetensors' holds tensor 'embed', which the index maps to "
                "another file"));
  j = good;
  j["weight_map"]["ghost"] = "model-00001-of-00004.safetensors";
  EXPECT_THAT(
      load_with(j),
      HasSubstr("tensor 'ghost' is mapped to 'model-00001-of-00004.safetensors' but that file "
                "does not contain it"));
  j = good;
  j["weight_map"].erase("layer.0");
  EXPECT_THAT(load_with(j), HasSubstr("holds tensor 'layer.0', which the index does not list"));
  j = good;
  j["weight_map"]["embed"] = "../model-00001-of-00004.safetensors";
  EXPECT_THAT(load_with(j), HasSubstr("must be a plain file name in the index's directory"));
  j = good;
  j["weight_map"]["embed"] = 1;
  EXPECT_THAT(load_with(j), HasSubstr("weight_map['embed'] must be a file name string"));
  j = good;
  j.erase("weight_map");
  EXPECT_THAT(load_with(j), HasSubstr("\"weight_map\" must be an object"));
  j = good;
  j["weight_map"] = nlohmann::json::object();
  EXPECT_THAT(load_with(j), HasSubstr("\"weight_map\" is empty"));
  write_file_bytes(index_path, "{\"weight_map\":{\"embed\":\"a\",\"embed\":\"b\"}}");
  EXPECT_THAT(error_of([&] { load_safetensors_any(dir.path.string()); }),
              HasSubstr("duplicate key 'embed'"));
  write_file_bytes(index_path, "{\"weight_map\":");
  EXPECT_THAT(error_of([&] { load_safetensors_any(dir.path.string()); }),
              HasSubstr("invalid JSON"));

  write_file_bytes(index_path, good.dump());
  EXPECT_EQ(load_safetensors_any(dir.path.string()).size(), shard_tensors().size());
  save_safetensors(dir.file("model.safetensors"), {{"x", torch::ones({1})}});
  EXPECT_THAT(error_of([&] { load_safetensors_any(dir.path.string()); }),
              HasSubstr("ambiguous checkpoint"));
  EXPECT_THAT(error_of([&] { load_safetensors_any(dir.file("nothing")); }),
              HasSubstr("no such file or directory"));
  TempDir empty;
  EXPECT_THAT(error_of([&] { load_safetensors_any(empty.path.string()); }),
              HasSubstr("no model.safetensors or model.safetensors.index.json"));
}

}  // namespace
}  // namespace polar::io
