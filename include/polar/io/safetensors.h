// safetensors reading (memory-mapped, validated as untrusted input) and writing (atomic).
// Format: u64 little-endian header length N, N bytes of JSON header
//   {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}}
// then the data section; offsets are relative to its start and must tile it exactly.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace polar::io {

struct TensorInfo {
  std::string name;
  std::string dtype;           // F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL (and U16/U32/U64 read)
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0; // byte offsets in the data section
};

// Parses and validates a whole file image (header + data). Throws polar::Error naming `where`
// and what is wrong; never reads outside [data, data + size).
std::vector<TensorInfo> parse_safetensors(const uint8_t* data, uint64_t size, const std::string& where,
                                          std::map<std::string, std::string>* metadata = nullptr);

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);  // mmap + parse_safetensors
  const std::vector<TensorInfo>& tensors() const;
  const std::map<std::string, std::string>& metadata() const;
  bool contains(const std::string& name) const;
  // An owning CPU tensor (copied out of the mapping) in the stored dtype.
  torch::Tensor tensor(const std::string& name) const;
  const std::string& path() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// Writes tensors (any device; contiguous copies are taken) to `path` atomically.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Loads every tensor of a checkpoint directory or file: DIR/model.safetensors, or sharded
// DIR/model.safetensors.index.json ({"weight_map": {name: file}}), or a single .safetensors path.
std::map<std::string, torch::Tensor> load_safetensors_any(const std::string& path);

// Writes DIR/model-0000i-of-0000n.safetensors + model.safetensors.index.json when the total
// exceeds max_shard_bytes, else DIR/model.safetensors. Tensor order is preserved.
void save_safetensors_sharded(const std::string& dir, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata = {});

}  // namespace polar::io
