// BPE merges as the `tokenizers` library applies them (models/bpe: merge_word, Word::merge_all).
#include "hf_bpe.h"

#include <atomic>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <queue>

#include "hf_text.h"
#include "polar/common/error.h"

namespace polar::hf {

using nlohmann::json;

namespace {

std::atomic<uint64_t> next_serial{1};

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Words seen by this thread, for the model that last used it.
struct WordCache {
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<uint32_t>> words;  // id, len, id, len, ...
  std::string key;
};
constexpr size_t kCacheWords = 1 << 17;
constexpr size_t kCacheMaxWordBytes = 256;  // as the library: longer words are not cached

using MergeMap = std::unordered_map<uint64_t, std::pair<uint32_t, int32_t>>;

// Options of the `tokenizers` BPE model that this one does not implement must be off.
void check_supported_options(const json& j, const std::string& where) {
  POLAR_CHECK(j.is_object(), where, ": expected an object");
  const std::string type = j.value("type", std::string("BPE"));
  POLAR_CHECK(type == "BPE", where, ".type: model \"", type,
              "\" is not supported (supported: BPE)");
  if (j.contains("dropout") && !j["dropout"].is_null()) {
    POLAR_CHECK(j["dropout"].is_number() && j["dropout"].get<double>() == 0.0, where,
                ".dropout: BPE dropout is not supported (expected null)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (j.contains(key) && !j[key].is_null()) {
      POLAR_CHECK(j[key].is_string() && j[key].get<std::string>().empty(), where, ".", key,
                  ": not supported (expected null or \"\")");
    }
  }
}

bool optional_flag(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return false;
  POLAR_CHECK(j[key].is_boolean(), where, ".", key, ": expected true or false");
  return j[key].get<bool>();
}

std::unordered_map<std::string, int32_t> read_vocab(const json& j, const std::string& where) {
  POLAR_CHECK(j.contains("vocab") && j["vocab"].is_object(), where,
              ".vocab: expected an object of token -> id");
  std::unordered_map<std::string, int32_t> vocab;
  for (const auto& [token, id] : j["vocab"].items()) {
    POLAR_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < (1 << 30),
                where, ".vocab[", json(token).dump(), "]: expected a token id, got ", id.dump());
    vocab[token] = id.get<int32_t>();
  }
  return vocab;
}

// Every token spelled in the byte alphabet, by its raw bytes (for ignore_merges).
std::unordered_map<std::string, int32_t> vocab_by_raw_bytes(
    const std::unordered_map<std::string, int32_t>& vocab) {
  const auto& chars = byte_level_chars();
  std::unordered_map<uint32_t, int> byte_of;
  for (int b = 0; b < 256; ++b) byte_of[chars[b]] = b;
  std::unordered_map<std::string, int32_t> raw_vocab;
  for (const auto& [token, id] : vocab) {
    std::string raw;
    bool ok = true;
    for (size_t i = 0; i < token.size() && ok;) {
      size_t len = 1;
      auto it = byte_of.find(decode_utf8(token, i, &len));
      ok = it != byte_of.end();
      if (ok) raw += static_cast<char>(it->second);
      i += len;
    }
    if (ok) raw_vocab.emplace(std::move(raw), id);
  }
  return raw_vocab;
}

// The two tokens of merges[rank]: "left right" or ["left", "right"].
std::pair<std::string, std::string> merge_pair(const json& m, size_t rank,
                                               const std::string& where) {
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    const size_t space = s.find(' ');
    POLAR_CHECK(space != std::string::npos && s.find(' ', space + 1) == std::string::npos, where,
                ".merges[", rank, "]: expected \"left right\", got ", m.dump());
    return {s.substr(0, space), s.substr(space + 1)};
  }
  POLAR_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), where,
              ".merges[", rank, "]: expected [\"left\", \"right\"], got ", m.dump());
  return {m[0].get<std::string>(), m[1].get<std::string>()};
}

// One symbol of a word being merged, in a doubly linked list over the word's positions.
struct Symbol {
  int32_t id;
  int32_t prev, next;
  uint32_t len;  // bytes covered; 0 once merged into its left neighbour
};

// A word's symbols as BPE::merge_word builds them: an unk is held back so that consecutive
// unknown characters can be fused into one.
struct WordSymbols {
  std::vector<Symbol> syms;
  int32_t pending_unk = -1;
  uint32_t pending_len = 0;

  void add(int32_t id, uint32_t len) {
    const auto n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, n + 1, len});
  }
  void flush_unk() {
    if (pending_unk < 0) return;
    add(pending_unk, pending_len);
    pending_unk = -1;
  }
  void add_known(int32_t id, uint32_t len) {
    flush_unk();
    add(id, len);
  }
  void add_unk(int32_t unk, uint32_t len, bool fuse) {
    if (pending_unk >= 0 && fuse) {
      pending_len += len;
      return;
    }
    flush_unk();
    pending_unk = unk;
    pending_len = len;
  }
};

// Applies the merges lowest rank first (leftmost among equal ranks), as Word::merge_all does.
void apply_merges(std::vector<Symbol>& syms, const MergeMap& merges) {
  struct Merge {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator<(const Merge& o) const {  // a max-heap of this order pops the lowest rank/pos
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Merge> queue;
  for (size_t p = 0; p + 1 < syms.size(); ++p) {
    auto it = merges.find(pair_key(syms[p].id, syms[p + 1].id));
    if (it != merges.end())
      queue.push({it->second.first, static_cast<int32_t>(p), it->second.second});
  }
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& cur = syms[static_cast<size_t>(top.pos)];
    if (cur.len == 0 || cur.next == -1) continue;
    const size_t next_pos = static_cast<size_t>(cur.next);
    const Symbol right = syms[next_pos];
    auto it = merges.find(pair_key(cur.id, right.id));
    if (it == merges.end() || it->second.second != top.new_id) continue;  // expired entry
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    syms[next_pos].len = 0;
    if (right.next >= 0 && static_cast<size_t>(right.next) < syms.size())
      syms[static_cast<size_t>(right.next)].prev = top.pos;
    if (cur.prev >= 0) {
      auto m = merges.find(pair_key(syms[static_cast<size_t>(cur.prev)].id, cur.id));
      if (m != merges.end()) queue.push({m->second.first, cur.prev, m->second.second});
    }
    if (cur.next >= 0) {
      auto m = merges.find(pair_key(cur.id, syms[static_cast<size_t>(cur.next)].id));
      if (m != merges.end()) queue.push({m->second.first, top.pos, m->second.second});
    }
  }
}

}  // namespace

BpeModel::BpeModel(const json& j, bool byte_level, const std::string& where)
    : byte_level_(byte_level), serial_(next_serial++) {
  check_supported_options(j, where);
  byte_fallback_ = optional_flag(j, "byte_fallback", where);
  fuse_unk_ = optional_flag(j, "fuse_unk", where);
  ignore_merges_ = optional_flag(j, "ignore_merges", where);

  vocab_ = read_vocab(j, where);
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab_) max_id = std::max<int64_t>(max_id, id);
  id_to_token_.resize(static_cast<size_t>(max_id + 1));
  has_id_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [token, id] : vocab_) {
    id_to_token_[static_cast<size_t>(id)] = token;
    has_id_[static_cast<size_t>(id)] = true;
  }

  if (j.contains("unk_token") && !j["unk_token"].is_null()) {
    POLAR_CHECK(j["unk_token"].is_string(), where, ".unk_token: expected a string or null");
    const std::string unk = j["unk_token"].get<std::string>();
    unk_ = find(unk);
    POLAR_CHECK(unk_ >= 0, where, ".unk_token: ", json(unk).dump(), " is not in the vocab");
  }
  for (int b = 0; b < 256; ++b) {
    char piece[8];
    std::snprintf(piece, sizeof piece, "<0x%02X>", b);
    fallback_ids_[b] = find(piece);
  }
  const auto& chars = byte_level_chars();
  for (int b = 0; b < 256; ++b) {
    std::string c;
    append_utf8(c, chars[b]);
    byte_ids_[b] = find(c);
  }
  if (byte_level_) raw_vocab_ = vocab_by_raw_bytes(vocab_);

  POLAR_CHECK(j.contains("merges") && j["merges"].is_array(), where, ".merges: expected an array");
  const json& merges = j["merges"];
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto [a, b] = merge_pair(merges[rank], rank, where);
    const int32_t ia = find(a), ib = find(b), merged = find(a + b);
    POLAR_CHECK(ia >= 0 && ib >= 0 && merged >= 0, where, ".merges[", rank,
                "]: ", merges[rank].dump(), " names a token that is not in the vocab");
    merges_[pair_key(ia, ib)] = {static_cast<uint32_t>(rank), merged};
  }
}

const std::string* BpeModel::token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[static_cast<size_t>(id)];
}

int32_t BpeModel::find(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& ids,
                        std::vector<uint32_t>& lens) const {
  if (word.empty()) return;
  thread_local WordCache cache;
  if (cache.owner != serial_) {
    cache.words.clear();
    cache.owner = serial_;
  }
  cache.key.assign(word.data(), word.size());
  if (ignore_merges_) {
    const auto& v = byte_level_ ? raw_vocab_ : vocab_;
    auto it = v.find(cache.key);
    if (it != v.end()) {
      ids.push_back(it->second);
      lens.push_back(static_cast<uint32_t>(word.size()));
      return;
    }
  }
  auto hit = cache.words.find(cache.key);
  if (hit != cache.words.end()) {
    const auto& v = hit->second;
    for (size_t i = 0; i < v.size(); i += 2) {
      ids.push_back(static_cast<int32_t>(v[i]));
      lens.push_back(v[i + 1]);
    }
    return;
  }
  const size_t first = ids.size(), first_len = lens.size();
  merge_word(word, ids, lens);
  if (word.size() < kCacheMaxWordBytes) {
    if (cache.words.size() >= kCacheWords) cache.words.clear();
    std::vector<uint32_t> v;
    v.reserve(2 * (ids.size() - first));
    for (size_t i = 0; first + i < ids.size(); ++i) {
      v.push_back(static_cast<uint32_t>(ids[first + i]));
      v.push_back(lens[first_len + i]);
    }
    cache.words.emplace(cache.key, std::move(v));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& ids,
                          std::vector<uint32_t>& lens) const {
  // Symbols, as BPE::merge_word builds them (unknown characters: byte fallback, then unk).
  WordSymbols word_syms;
  word_syms.syms.reserve(word.size());
  const auto& chars = byte_level_chars();
  for (size_t i = 0; i < word.size();) {
    size_t len = 1;
    int32_t id = -1;
    std::string key;
    if (byte_level_) {
      const auto b = static_cast<unsigned char>(word[i]);
      id = byte_ids_[b];
      if (id < 0) append_utf8(key, chars[b]);
    } else {
      decode_utf8(word, i, &len);
      key.assign(word.substr(i, len));
      id = find(key);
    }
    const auto blen = static_cast<uint32_t>(len);
    i += len;
    if (id >= 0) {
      word_syms.add_known(id, blen);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char c : key) all = all && fallback_ids_[c] >= 0;
      if (all) {
        // Each fallback byte covers one byte, as in the library (callers clamp the sum to the
        // word: a byte-level alphabet character is two bytes long but stands for one).
        for (unsigned char c : key) word_syms.add(fallback_ids_[c], 1);
        continue;
      }
    }
    if (unk_ >= 0) word_syms.add_unk(unk_, blen, fuse_unk_);
  }
  word_syms.flush_unk();
  std::vector<Symbol>& syms = word_syms.syms;
  if (syms.empty()) return;
  syms.back().next = -1;
  apply_merges(syms, merges_);
  for (const Symbol& s : syms) {
    if (s.len == 0) continue;
    ids.push_back(s.id);
    lens.push_back(s.len);
  }
}

}  // namespace polar::hf
