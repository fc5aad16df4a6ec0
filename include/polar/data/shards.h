// Token shards: the on-disk form of built POLAR data, memory-mapped by training.
//
// A dataset directory (output of `polar data pretrain|preference`):
//   manifest.json        counts of prompts, groups, tokens, skipped records by reason, settings
//   tokenizer/           copy of the tokenizer used
//   train/ eval/         one split each: split.json + shard-00000.bin, shard-00001.bin, ...
// split.json: {"format":"polar-groups-v1","template":"pretrain|finetune","groups":N,
//              "tokens":N,"categories":[...],"shards":["shard-00000.bin",...]}
//
// shard-NNNNN.bin, little-endian:
//   header (64 B): magic "POLARGS1", u32 version=1, u32 0, u64 n_groups, u64 n_candidates,
//                  u64 n_tokens, 3 x u64 0
//   groups (32 B each): u64 prefix_offset, u32 prefix_len, u32 n_candidates,
//                       u64 first_candidate, u32 category, u32 0
//   candidates (16 B each): u64 token_offset, u32 len, u32 0
//   tokens: n_tokens x i32
// A group is one prefix (prompt + reference) and its candidates: [0] positive, [1..] negatives.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "polar/tokenizer/template.h"

namespace polar {

struct TokenSpan {
  const int32_t* data = nullptr;
  int64_t size = 0;
};

struct GroupRef {
  TokenSpan prefix;
  std::vector<TokenSpan> candidates;  // [0] positive/chosen, [1..] negatives/rejected
  int32_t category = 0;               // index into GroupDataset::categories()
  int64_t longest_sequence() const {  // prefix + longest candidate
    int64_t longest = 0;
    for (const auto& c : candidates) longest = c.size > longest ? c.size : longest;
    return prefix.size + longest;
  }
  int64_t total_tokens() const {  // sum over candidates of (prefix + candidate)
    int64_t total = 0;
    for (const auto& c : candidates) total += prefix.size + c.size;
    return total;
  }
};

// A shard is closed at groups_per_shard groups or once its tokens reach shard_bytes, which
// bounds the writer's memory.
constexpr int64_t kDefaultShardBytes = int64_t{256} << 20;

// Writes one split directory. Groups are buffered per shard; finish() writes split.json.
// Files are written to temporary names and renamed, so a crash leaves no partial shard.
class ShardWriter {
 public:
  ShardWriter(std::string split_dir, TemplateKind kind, int64_t groups_per_shard = 100000,
              int64_t shard_bytes = kDefaultShardBytes);
  ~ShardWriter();
  void add(const EncodedGroup& group, int32_t category);
  // categories: names for the category ids passed to add().
  void finish(const std::vector<std::string>& categories);
  int64_t groups() const { return total_groups_; }
  int64_t tokens() const { return total_tokens_; }

 private:
  void flush_shard();
  std::string dir_;
  TemplateKind kind_;
  int64_t groups_per_shard_;
  int64_t shard_bytes_;
  int64_t pending_bytes_ = 0;
  std::vector<EncodedGroup> pending_;
  std::vector<int32_t> pending_category_;
  std::vector<std::string> shard_names_;
  int64_t total_groups_ = 0;
  int64_t total_tokens_ = 0;
  bool finished_ = false;
};

// Writes SPLIT_DIR/split.json (atomically) listing `shards`, which must already be in place.
void write_split_index(const std::string& split_dir, TemplateKind kind, int64_t groups,
                       int64_t tokens, const std::vector<std::string>& categories,
                       const std::vector<std::string>& shards);

// A memory-mapped split. Every offset is validated on open (files are untrusted).
class GroupDataset {
 public:
  static GroupDataset open(const std::string& split_dir);
  int64_t size() const;
  GroupRef group(int64_t index) const;
  const std::vector<std::string>& categories() const;
  TemplateKind template_kind() const;
  int64_t tokens() const;
  const std::string& dir() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace polar
