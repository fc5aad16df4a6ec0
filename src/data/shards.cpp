// Token shards: ShardWriter writes the format described in shards.h; GroupDataset memory-maps
// it and checks every field against the file size before any span is handed out.
#include "polar/data/shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "polar/common/error.h"
#include "polar/common/json_config.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "shards are little-endian; add byte swapping");

namespace polar {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr char kMagic[8] = {'P', 'O', 'L', 'A', 'R', 'G', 'S', '1'};
constexpr uint32_t kVersion = 1;
constexpr const char* kSplitFormat = "polar-groups-v1";
constexpr uint64_t kHeaderBytes = 64;
constexpr uint64_t kGroupBytes = 32;
constexpr uint64_t kCandidateBytes = 16;

struct Header {  // 64 bytes on disk
  char magic[8];
  uint32_t version;
  uint32_t reserved0;
  uint64_t n_groups;
  uint64_t n_candidates;
  uint64_t n_tokens;
  uint64_t reserved[3];
};
struct GroupEntry {  // 32 bytes on disk
  uint64_t prefix_offset;
  uint32_t prefix_len;
  uint32_t n_candidates;
  uint64_t first_candidate;
  uint32_t category;
  uint32_t reserved;
};
struct CandidateEntry {  // 16 bytes on disk
  uint64_t token_offset;
  uint32_t len;
  uint32_t reserved;
};
static_assert(sizeof(Header) == kHeaderBytes && sizeof(GroupEntry) == kGroupBytes &&
                  sizeof(CandidateEntry) == kCandidateBytes,
              "on-disk layout");

template <typename T>
void append(std::string& out, const T& value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

std::string shard_name(size_t index) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "shard-%05zu.bin", index);
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ShardWriter

ShardWriter::ShardWriter(std::string split_dir, TemplateKind kind, int64_t groups_per_shard,
                         int64_t shard_bytes)
    : dir_(std::move(split_dir)),
      kind_(kind),
      groups_per_shard_(groups_per_shard),
      shard_bytes_(shard_bytes) {
  POLAR_CHECK(groups_per_shard_ > 0 && shard_bytes_ > 0,
              "ShardWriter: groups_per_shard and shard_bytes must be positive");
  std::error_code ec;
  fs::create_directories(dir_, ec);
  POLAR_CHECK(!ec && fs::is_directory(dir_), dir_, ": cannot create directory: ", ec.message());
}

ShardWriter::~ShardWriter() = default;

void ShardWriter::add(const EncodedGroup& group, int32_t category) {
  POLAR_CHECK(!finished_, dir_, ": ShardWriter::add after finish()");
  POLAR_CHECK(category >= 0, dir_, ": negative category id ", category);
  POLAR_CHECK(!group.candidates.empty(), dir_, ": a group needs at least one candidate");
  POLAR_CHECK(group.prefix.size() <= std::numeric_limits<uint32_t>::max(), dir_,
              ": prefix too long");
  for (const auto& c : group.candidates) {
    POLAR_CHECK(!c.empty() && c.size() <= std::numeric_limits<uint32_t>::max(), dir_,
                ": candidate length must be in [1, 2^32)");
  }
  pending_.push_back(group);
  pending_category_.push_back(category);
  pending_bytes_ += 4 * static_cast<int64_t>(group.prefix.size());
  for (const auto& c : group.candidates) pending_bytes_ += 4 * static_cast<int64_t>(c.size());
  if (static_cast<int64_t>(pending_.size()) >= groups_per_shard_ || pending_bytes_ >= shard_bytes_)
    flush_shard();
}

void ShardWriter::flush_shard() {
  if (pending_.empty()) return;
  uint64_t n_candidates = 0, n_tokens = 0;
  for (const auto& g : pending_) {
    n_candidates += g.candidates.size();
    n_tokens += g.prefix.size();
    for (const auto& c : g.candidates) n_tokens += c.size();
  }
  const uint64_t n_groups = pending_.size();
  std::string bytes;
  bytes.reserve(kHeaderBytes + kGroupBytes * n_groups + kCandidateBytes * n_candidates +
                4 * n_tokens);

  Header h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.version = kVersion;
  h.n_groups = n_groups;
  h.n_candidates = n_candidates;
  h.n_tokens = n_tokens;
  append(bytes, h);

  // Tokens are laid out group by group: prefix, then its candidates in order.
  uint64_t token_cursor = 0, candidate_cursor = 0;
  for (size_t i = 0; i < pending_.size(); ++i) {
    const auto& g = pending_[i];
    GroupEntry e{};
    e.prefix_offset = token_cursor;
    e.prefix_len = static_cast<uint32_t>(g.prefix.size());
    e.n_candidates = static_cast<uint32_t>(g.candidates.size());
    e.first_candidate = candidate_cursor;
    e.category = static_cast<uint32_t>(pending_category_[i]);
    append(bytes, e);
    token_cursor += g.prefix.size();
    for (const auto& c : g.candidates) token_cursor += c.size();
    candidate_cursor += g.candidates.size();
  }
  token_cursor = 0;
  for (const auto& g : pending_) {
    token_cursor += g.prefix.size();
    for (const auto& c : g.candidates) {
      CandidateEntry ce{};
      ce.token_offset = token_cursor;
      ce.len = static_cast<uint32_t>(c.size());
      append(bytes, ce);
      token_cursor += c.size();
    }
  }
  for (const auto& g : pending_) {
    bytes.append(reinterpret_cast<const char*>(g.prefix.data()), 4 * g.prefix.size());
    for (const auto& c : g.candidates)
      bytes.append(reinterpret_cast<const char*>(c.data()), 4 * c.size());
  }

  const std::string name = shard_name(shard_names_.size());
  write_file_atomic((fs::path(dir_) / name).string(), bytes);
  shard_names_.push_back(name);
  total_groups_ += static_cast<int64_t>(n_groups);
  total_tokens_ += static_cast<int64_t>(n_tokens);
  pending_.clear();
  pending_category_.clear();
  pending_bytes_ = 0;
}

void ShardWriter::finish(const std::vector<std::string>& categories) {
  POLAR_CHECK(!finished_, dir_, ": ShardWriter::finish called twice");
  for (int32_t c : pending_category_) {
    POLAR_CHECK(c < static_cast<int64_t>(categories.size()), dir_, ": category id ", c,
                " has no name (", categories.size(), " categories given)");
  }
  flush_shard();
  write_split_index(dir_, kind_, total_groups_, total_tokens_, categories, shard_names_);
  finished_ = true;
}

void write_split_index(const std::string& split_dir, TemplateKind kind, int64_t groups,
                       int64_t tokens, const std::vector<std::string>& categories,
                       const std::vector<std::string>& shards) {
  json split = {{"format", kSplitFormat},   {"template", template_kind_name(kind)},
                {"groups", groups},         {"tokens", tokens},
                {"categories", categories}, {"shards", shards}};
  write_json_file_atomic((fs::path(split_dir) / "split.json").string(), split);
}

// ---------------------------------------------------------------------------------------------
// GroupDataset

namespace {

struct MappedShard {
  std::string path;
  const unsigned char* base = nullptr;
  size_t bytes = 0;
  uint64_t n_groups = 0, n_candidates = 0, n_tokens = 0;
  const GroupEntry* groups() const {
    return reinterpret_cast<const GroupEntry*>(base + kHeaderBytes);
  }
  const CandidateEntry* candidates() const {
    return reinterpret_cast<const CandidateEntry*>(base + kHeaderBytes + kGroupBytes * n_groups);
  }
  const int32_t* tokens() const {
    return reinterpret_cast<const int32_t*>(base + kHeaderBytes + kGroupBytes * n_groups +
                                            kCandidateBytes * n_candidates);
  }
};

// a * b + c without overflow, or false.
bool mul_add(uint64_t a, uint64_t b, uint64_t c, uint64_t& out) {
  if (b != 0 && a > (std::numeric_limits<uint64_t>::max() - c) / b) return false;
  out = a * b + c;
  return true;
}

}  // namespace

struct GroupDataset::Impl {
  std::string dir;
  TemplateKind kind = TemplateKind::Pretrain;
  std::vector<std::string> categories;
  std::vector<MappedShard> shards;
  std::vector<int64_t> group_start;  // cumulative group index of each shard
  int64_t n_groups = 0;
  int64_t n_tokens = 0;

  ~Impl() {
    for (auto& s : shards) {
      if (s.base) ::munmap(const_cast<unsigned char*>(s.base), s.bytes);
    }
  }

  void map_shard(const std::string& path) {
    MappedShard s;
    s.path = path;
    int fd = ::open(path.c_str(), O_RDONLY);
    POLAR_CHECK(fd >= 0, path, ": cannot open shard");
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw Error(path + ": not a regular file");
    }
    s.bytes = static_cast<size_t>(st.st_size);
    if (s.bytes < kHeaderBytes) {
      ::close(fd);
      throw Error(path + ": corrupted shard: " + std::to_string(s.bytes) +
                  " bytes, shorter than the 64-byte header");
    }
    void* p = ::mmap(nullptr, s.bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    POLAR_CHECK(p != MAP_FAILED, path, ": mmap failed");
    s.base = static_cast<const unsigned char*>(p);
    shards.push_back(s);  // owned from here on, unmapped by ~Impl even if validation throws
    validate(shards.back());
  }

  void validate(MappedShard& s) const {
    const std::string& path = s.path;
    Header h;
    std::memcpy(&h, s.base, sizeof(h));
    POLAR_CHECK(std::memcmp(h.magic, kMagic, sizeof(kMagic)) == 0, path,
                ": corrupted shard: bad magic (expected \"POLARGS1\")");
    POLAR_CHECK(h.version == kVersion, path, ": unsupported shard version ", h.version,
                " (expected 1)");
    POLAR_CHECK(h.reserved0 == 0 && h.reserved[0] == 0 && h.reserved[1] == 0 && h.reserved[2] == 0,
                path, ": corrupted shard: reserved header fields are not zero");
    uint64_t expected = kHeaderBytes;
    const bool ok = mul_add(h.n_groups, kGroupBytes, expected, expected) &&
                    mul_add(h.n_candidates, kCandidateBytes, expected, expected) &&
                    mul_add(h.n_tokens, 4, expected, expected);
    POLAR_CHECK(ok && expected == s.bytes, path, ": corrupted shard: header says ", h.n_groups,
                " groups, ", h.n_candidates, " candidates, ", h.n_tokens,
                " tokens, which does not match the file size ", s.bytes,
                " bytes (truncated or damaged)");
    s.n_groups = h.n_groups;
    s.n_candidates = h.n_candidates;
    s.n_tokens = h.n_tokens;

    const GroupEntry* groups = s.groups();
    const CandidateEntry* cands = s.candidates();
    for (uint64_t i = 0; i < s.n_groups; ++i) {
      GroupEntry g;
      std::memcpy(&g, groups + i, sizeof(g));
      POLAR_CHECK(g.prefix_offset <= s.n_tokens && g.prefix_len <= s.n_tokens - g.prefix_offset,
                  path, ": corrupted shard: group ", i, " prefix [", g.prefix_offset, ", +",
                  g.prefix_len, ") outside the ", s.n_tokens, " tokens");
      POLAR_CHECK(g.n_candidates >= 1 && g.first_candidate <= s.n_candidates &&
                      g.n_candidates <= s.n_candidates - g.first_candidate,
                  path, ": corrupted shard: group ", i, " candidates [", g.first_candidate, ", +",
                  g.n_candidates, ") outside the ", s.n_candidates, " candidates");
      POLAR_CHECK(g.category < categories.size(), path, ": corrupted shard: group ", i,
                  " category ", g.category, " but split.json lists ", categories.size(),
                  " categories");
      POLAR_CHECK(g.reserved == 0, path, ": corrupted shard: group ", i,
                  " reserved field is not zero");
    }
    for (uint64_t i = 0; i < s.n_candidates; ++i) {
      CandidateEntry c;
      std::memcpy(&c, cands + i, sizeof(c));
      POLAR_CHECK(
          c.len >= 1 && c.token_offset <= s.n_tokens && c.len <= s.n_tokens - c.token_offset, path,
          ": corrupted shard: candidate ", i, " tokens [", c.token_offset, ", +", c.len,
          ") outside the ", s.n_tokens, " tokens");
      POLAR_CHECK(c.reserved == 0, path, ": corrupted shard: candidate ", i,
                  " reserved field is not zero");
    }
  }
};

GroupDataset GroupDataset::open(const std::string& split_dir) {
  const std::string split_path = (fs::path(split_dir) / "split.json").string();
  json split = read_json_file(split_path);
  ConfigReader r(split, split_path);
  std::string format, kind;
  int64_t groups = -1, tokens = -1;
  std::vector<std::string> shard_names;
  auto impl = std::make_shared<Impl>();
  impl->dir = split_dir;
  r.get("format", format);
  r.get("template", kind);
  r.get("groups", groups);
  r.get("tokens", tokens);
  r.get("categories", impl->categories);
  r.get("shards", shard_names);
  r.finish();
  POLAR_CHECK(format == kSplitFormat, split_path, ".format: expected \"", kSplitFormat,
              "\", got \"", format, "\"");
  try {
    impl->kind = parse_template_kind(kind);
  } catch (const Error& e) {
    throw Error(split_path + ".template: " + e.what());
  }
  POLAR_CHECK(groups >= 0 && tokens >= 0, split_path,
              ": \"groups\" and \"tokens\" must be present and >= 0");
  for (const auto& name : shard_names) {
    POLAR_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
                split_path, ": shard name \"", name,
                "\" must be a plain file name inside the split directory");
    impl->group_start.push_back(impl->n_groups);
    impl->map_shard((fs::path(split_dir) / name).string());
    impl->n_groups += static_cast<int64_t>(impl->shards.back().n_groups);
    impl->n_tokens += static_cast<int64_t>(impl->shards.back().n_tokens);
  }
  POLAR_CHECK(impl->n_groups == groups && impl->n_tokens == tokens, split_path, ": lists ", groups,
              " groups and ", tokens, " tokens but the shards hold ", impl->n_groups,
              " groups and ", impl->n_tokens, " tokens");
  GroupDataset ds;
  ds.impl_ = std::move(impl);
  return ds;
}

int64_t GroupDataset::size() const { return impl_ ? impl_->n_groups : 0; }

GroupRef GroupDataset::group(int64_t index) const {
  POLAR_CHECK(impl_ && index >= 0 && index < impl_->n_groups, "GroupDataset::group: index ", index,
              " outside [0, ", size(), ")");
  const auto& starts = impl_->group_start;
  const size_t shard =
      static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), index) - starts.begin()) -
      1;
  const MappedShard& s = impl_->shards[shard];
  GroupEntry g;
  std::memcpy(&g, s.groups() + (index - starts[shard]), sizeof(g));
  const int32_t* tokens = s.tokens();
  GroupRef ref;
  ref.prefix = {tokens + g.prefix_offset, static_cast<int64_t>(g.prefix_len)};
  ref.category = static_cast<int32_t>(g.category);
  ref.candidates.reserve(g.n_candidates);
  for (uint32_t k = 0; k < g.n_candidates; ++k) {
    CandidateEntry c;
    std::memcpy(&c, s.candidates() + g.first_candidate + k, sizeof(c));
    ref.candidates.push_back({tokens + c.token_offset, static_cast<int64_t>(c.len)});
  }
  return ref;
}

const std::vector<std::string>& GroupDataset::categories() const {
  POLAR_CHECK(impl_, "GroupDataset: not opened");
  return impl_->categories;
}

TemplateKind GroupDataset::template_kind() const {
  POLAR_CHECK(impl_, "GroupDataset: not opened");
  return impl_->kind;
}

int64_t GroupDataset::tokens() const { return impl_ ? impl_->n_tokens : 0; }

const std::string& GroupDataset::dir() const {
  POLAR_CHECK(impl_, "GroupDataset: not opened");
  return impl_->dir;
}

}  // namespace polar
