// safetensors reading (memory-mapped, validated as untrusted input) and writing (atomic).
// Format: u64 little-endian header length N, N bytes of JSON header
//   {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}}
// then the data section; offsets are relative to its start and must tile it exactly.
// The torch-free part (TensorInfo, parse_safetensors, dtype table) is in safetensors_format.h.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "polar/io/safetensors_format.h"

namespace polar::io {

class SafetensorsFile {
 public:
  // mmap (read-only) + parse_safetensors. The mapping lives as long as any copy of the handle.
  // Like every mmap reader, a file truncated by another process while open is not defended against.
  static SafetensorsFile open(const std::string& path);
  // Sorted by data offset.
  const std::vector<TensorInfo>& tensors() const;
  const std::map<std::string, std::string>& metadata() const;
  bool contains(const std::string& name) const;
  // The header entry of `name`; throws polar::Error naming the file when absent.
  const TensorInfo& info(const std::string& name) const;
  // An owning CPU tensor (copied out of the mapping) in the stored dtype. Throws polar::Error when
  // the dtype has no torch equivalent or a BOOL byte is neither 0 nor 1.
  torch::Tensor tensor(const std::string& name) const;
  const std::string& path() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// Writes tensors (any device; contiguous CPU copies are taken one at a time) to `path` atomically
// (temporary file, fsync, rename), in the given order. Dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8
// BOOL (and U16/U32/U64, F8_E4M3/F8_E5M2). transformers refuses a file whose metadata lacks
// "format": "pt", so pass {{"format", "pt"}} for files meant for it.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Loads every tensor of a checkpoint directory or file: DIR/model.safetensors, or sharded
// DIR/model.safetensors.index.json ({"weight_map": {name: file}}), or a single .safetensors path
// (or an .index.json path). The index is validated: every file it names is a plain file name in
// the index's directory that exists, every tensor is in the file it is mapped to, and every tensor
// of those files is listed. A directory holding both layouts is refused as ambiguous.
std::map<std::string, torch::Tensor> load_safetensors_any(const std::string& path);

// Writes DIR/model-0000i-of-0000n.safetensors + model.safetensors.index.json when the total
// exceeds max_shard_bytes, else DIR/model.safetensors. Tensor order is preserved; a tensor larger
// than max_shard_bytes gets a shard of its own. The index ({"metadata": {"total_size"},
// "weight_map"}) is written last, and the file of the other layout, if present, is removed.
void save_safetensors_sharded(const std::string& dir,
                              const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              uint64_t max_shard_bytes,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace polar::io
