// Token shards: write/read round trip, and corrupted files rejected with a message naming them.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "../tokenizer/tiny_tokenizer.h"
#include "polar/common/error.h"
#include "polar/data/shards.h"

namespace polar {
namespace {

using polar_test::read_bytes;
using polar_test::TempDir;
using polar_test::write_text;

EncodedGroup make_group(int32_t base, int n_candidates) {
  EncodedGroup g;
  for (int32_t i = 0; i < 3 + base % 4; ++i) g.prefix.push_back(base + i);
  for (int c = 0; c < n_candidates; ++c)
    g.candidates.push_back({base + 100 + c, base + 200 + c, 7});
  g.candidates.back().insert(g.candidates.back().begin(), base + 50);  // lengths differ
  return g;
}

std::vector<int32_t> to_vec(const TokenSpan& s) { return {s.data, s.data + s.size}; }

std::string write_split(const TempDir& dir, int n_groups, int per_shard) {
  const std::string split = dir.file("train");
  ShardWriter w(split, TemplateKind::Finetune, per_shard);
  for (int i = 0; i < n_groups; ++i) w.add(make_group(10 * i, 2 + i % 2), i % 3);
  w.finish({"a", "b", "c"});
  return split;
}

std::string open_error(const std::string& split) {
  try {
    GroupDataset::open(split);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Overwrites bytes of a shard file in place.
void patch(const std::string& path, size_t offset, const void* data, size_t n) {
  std::string bytes = read_bytes(path);
  ASSERT_LE(offset + n, bytes.size());
  std::memcpy(&bytes[offset], data, n);
  write_text(path, bytes);
}

TEST(ShardsTest, RoundTrip) {
  TempDir dir;
  const std::string split = write_split(dir, 5, 2);
  const auto meta = nlohmann::json::parse(read_bytes(split + "/split.json"));
  EXPECT_EQ(meta["format"], "polar-groups-v1");
  EXPECT_EQ(meta["template"], "finetune");
  EXPECT_EQ(meta["groups"], 5);
  EXPECT_EQ(meta["shards"],
            (std::vector<std::string>{"shard-00000.bin", "shard-00001.bin", "shard-00002.bin"}));

  const GroupDataset ds = GroupDataset::open(split);
  ASSERT_EQ(ds.size(), 5);
  EXPECT_EQ(ds.template_kind(), TemplateKind::Finetune);
  EXPECT_EQ(ds.categories(), (std::vector<std::string>{"a", "b", "c"}));
  int64_t tokens = 0;
  for (int i = 0; i < 5; ++i) {
    const EncodedGroup want = make_group(10 * i, 2 + i % 2);
    const GroupRef g = ds.group(i);
    EXPECT_EQ(to_vec(g.prefix), want.prefix);
    ASSERT_EQ(g.candidates.size(), want.candidates.size());
    for (size_t c = 0; c < want.candidates.size(); ++c)
      EXPECT_EQ(to_vec(g.candidates[c]), want.candidates[c]);
    EXPECT_EQ(g.category, i % 3);
    EXPECT_EQ(g.longest_sequence(), static_cast<int64_t>(want.prefix.size() + 4));
    tokens += g.prefix.size;
    for (const auto& c : g.candidates) tokens += c.size;
  }
  EXPECT_EQ(ds.tokens(), tokens);
  EXPECT_EQ(meta["tokens"], tokens);
  EXPECT_THROW(ds.group(5), Error);
  EXPECT_THROW(ds.group(-1), Error);
  // The file is exactly header + tables + tokens (shard 2 holds one group of 2 candidates).
  const auto size = std::filesystem::file_size(split + "/shard-00002.bin");
  const GroupRef last = ds.group(4);
  EXPECT_EQ(size, 64u + 32u + 16u * 2 +
                      4u * static_cast<uint64_t>(last.total_tokens() - last.prefix.size));
}

TEST(ShardsTest, EmptySplitAndWriterChecks) {
  TempDir dir;
  {
    ShardWriter w(dir.file("eval"), TemplateKind::Pretrain);
    w.finish({});
  }
  const GroupDataset ds = GroupDataset::open(dir.file("eval"));
  EXPECT_EQ(ds.size(), 0);
  EXPECT_EQ(ds.template_kind(), TemplateKind::Pretrain);

  ShardWriter w(dir.file("x"), TemplateKind::Pretrain);
  EXPECT_THROW(w.add(EncodedGroup{}, 0), Error);  // no candidates
  w.add(make_group(1, 2), 3);
  EXPECT_THROW(w.finish({"only-one"}), Error);  // category 3 has no name
}

TEST(ShardsTest, CorruptedShardsFailCleanly) {
  struct Case {
    const char* name;
    std::function<void(const std::string& shard)> damage;
    const char* expected;
  };
  const uint64_t huge = uint64_t{1} << 62;
  const uint32_t big32 = 1u << 30;
  const std::vector<Case> cases = {
      {"truncated",
       [](const std::string& s) {
         std::filesystem::resize_file(s, std::filesystem::file_size(s) - 4);
       },
       "does not match the file size"},
      {"shorter than header", [](const std::string& s) { std::filesystem::resize_file(s, 10); },
       "64-byte header"},
      {"empty", [](const std::string& s) { std::filesystem::resize_file(s, 0); }, "64-byte header"},
      {"bad magic", [](const std::string& s) { patch(s, 0, "POLARGS2", 8); }, "bad magic"},
      {"bad version",
       [](const std::string& s) {
         uint32_t v = 9;
         patch(s, 8, &v, 4);
       },
       "unsupported shard version"},
      {"reserved header",
       [](const std::string& s) {
         uint64_t v = 1;
         patch(s, 48, &v, 8);
       },
       "reserved"},
      {"token count overflow", [&](const std::string& s) { patch(s, 32, &huge, 8); },
       "does not match the file size"},
      {"prefix offset", [&](const std::string& s) { patch(s, 64, &huge, 8); }, "group 0 prefix"},
      {"prefix length", [&](const std::string& s) { patch(s, 64 + 32 + 8, &big32, 4); },
       "group 1 prefix"},
      {"first candidate", [&](const std::string& s) { patch(s, 64 + 16, &huge, 8); },
       "group 0 candidates"},
      {"no candidates",
       [](const std::string& s) {
         uint32_t z = 0;
         patch(s, 64 + 12, &z, 4);
       },
       "group 0 candidates"},
      {"category",
       [](const std::string& s) {
         uint32_t c = 3;
         patch(s, 64 + 24, &c, 4);
       },
       "category 3"},
      {"candidate offset", [&](const std::string& s) { patch(s, 64 + 2 * 32 + 16, &huge, 8); },
       "candidate 1 tokens"},
      {"candidate length", [&](const std::string& s) { patch(s, 64 + 2 * 32 + 8, &big32, 4); },
       "candidate 0 tokens"},
  };
  for (const auto& c : cases) {
    TempDir dir;
    const std::string split = write_split(dir, 2, 10);  // one shard, two groups
    const std::string shard = split + "/shard-00000.bin";
    c.damage(shard);
    const std::string msg = open_error(split);
    EXPECT_NE(msg.find(shard), std::string::npos) << c.name << ": " << msg;
    EXPECT_NE(msg.find(c.expected), std::string::npos) << c.name << ": " << msg;
  }
}

TEST(ShardsTest, BadSplitJson) {
  TempDir dir;
  const std::string split = write_split(dir, 3, 10);
  auto meta = nlohmann::json::parse(read_bytes(split + "/split.json"));
  auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    auto m = meta;
    edit(m);
    write_text(split + "/split.json", m.dump());
    return open_error(split);
  };
  EXPECT_NE(with([](auto& m) { m["groups"] = 4; }).find("shards hold 3 groups"), std::string::npos);
  EXPECT_NE(with([](auto& m) { m["shards"] = {"../x.bin"}; }).find("plain file name"),
            std::string::npos);
  EXPECT_NE(with([](auto& m) { m["shards"] = {"shard-00009.bin"}; }).find("cannot open shard"),
            std::string::npos);
  EXPECT_NE(with([](auto& m) { m["format"] = "v0"; }).find("format"), std::string::npos);
  EXPECT_NE(with([](auto& m) { m["template"] = "chat"; }).find("template"), std::string::npos);
  EXPECT_NE(with([](auto& m) { m["categories"] = {"a"}; }).find("category 1"), std::string::npos);
  EXPECT_NE(with([](auto& m) { m["extra"] = 1; }).find("unknown key"), std::string::npos);
  EXPECT_NE(open_error(dir.file("nowhere")).find("cannot open"), std::string::npos);
}

}  // namespace
}  // namespace polar
