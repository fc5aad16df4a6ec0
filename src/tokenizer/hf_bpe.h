// The BPE model of a tokenizer.json: rank-ordered merges over a word's symbols (bytes for
// byte-level tokenizers, characters otherwise), with byte fallback, unk fusing and
// ignore_merges as the `tokenizers` library does them, and a per-thread cache of words.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace polar::hf {

class BpeModel {
 public:
  // `j` is tokenizer.json's "model"; `byte_level`: the pre-tokenizer maps bytes to GPT-2's
  // alphabet, so a word's symbols are its bytes.
  BpeModel(const nlohmann::json& j, bool byte_level, const std::string& where);

  // Appends the ids of one pre-tokenized word and, per id, the number of the word's bytes it
  // covers (they add up to word.size()).
  void tokenize(std::string_view word, std::vector<int32_t>& ids,
                std::vector<uint32_t>& lens) const;

  int64_t size() const { return static_cast<int64_t>(id_to_token_.size()); }
  const std::string* token(int32_t id) const;    // nullptr when the model has no such id
  int32_t find(const std::string& token) const;  // -1 when absent

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& ids,
                  std::vector<uint32_t>& lens) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<uint32_t, int32_t>> merges_;
  bool byte_level_ = false;
  std::array<int32_t, 256> byte_ids_{};  // byte-level: the id of each byte's character
  std::unordered_map<std::string, int32_t> raw_vocab_;  // byte-level: vocab by raw bytes
  std::array<int32_t, 256> fallback_ids_{};             // "<0xAB>" pieces, -1 when absent
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  int32_t unk_ = -1;
  uint64_t serial_ = 0;  // identifies this model to the per-thread cache
};

}  // namespace polar::hf
