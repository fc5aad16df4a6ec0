// The decoder of a tokenizer.json (ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace,
// Sequence, or none), turning tokens back into text as the `tokenizers` library does.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace polar::hf {

class Decoder {
 public:
  Decoder(const nlohmann::json& j, const std::string& where);
  ~Decoder();
  // Without a decoder the tokens are joined with spaces, as the library does.
  std::string decode(std::vector<std::string> tokens) const;

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
  bool none_ = true;
};

// String::from_utf8_lossy: each maximal ill-formed subsequence becomes one U+FFFD.
std::string utf8_lossy(const std::string& bytes);

}  // namespace polar::hf
