// The safetensors byte format without torch: dtype table, the validating header parser and the
// header encoder. Kept torch-free so the parser can be built and fuzzed on its own
// (scripts/asan_safetensors.sh); polar/io/safetensors.h adds mmap, torch tensors and writing.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
//   {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}}
// then the data section; offsets are relative to its start and must tile it exactly.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace polar::io {

// Same bound as the reference implementation: a larger header is refused before it is read.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

struct TensorInfo {
  std::string name;
  std::string
      dtype;  // F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL (and U16/U32/U64, F8_E4M3/F8_E5M2 read)
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets in the data section
};

// Bytes per element of a safetensors dtype name, or 0 when the name is not a known dtype.
uint64_t safetensors_dtype_size(const std::string& dtype);

// Parses and validates a whole file image (header + data). Throws polar::Error naming `where`
// and what is wrong; never reads outside [data, data + size). On success the tensors are
// returned sorted by data offset and tile [0, data section size) exactly.
std::vector<TensorInfo> parse_safetensors(const uint8_t* data, uint64_t size,
                                          const std::string& where,
                                          std::map<std::string, std::string>* metadata = nullptr);

// Where the data section starts (8 + N) in an image that parse_safetensors accepted.
uint64_t safetensors_data_offset(const uint8_t* data, uint64_t size);

// The 8-byte length prefix plus the JSON header for `tensors` (in the given order), padded with
// spaces to a multiple of 8 bytes so the data section starts 8-aligned, as the reference writer
// does. Offsets are written as given; metadata is omitted when empty. Throws polar::Error on a
// name or value that is not valid UTF-8, a duplicate name, or a name "__metadata__".
std::string encode_safetensors_header(const std::vector<TensorInfo>& tensors,
                                      const std::map<std::string, std::string>& metadata);

namespace detail {
// JSON parse for untrusted text that, unlike plain nlohmann::json::parse, rejects duplicate
// object keys (nlohmann silently keeps the last) and nesting deeper than `max_depth`.
// Errors read "<where>: <what>".
nlohmann::json parse_json_strict(const char* begin, const char* end, const std::string& where,
                                 int max_depth);
}  // namespace detail

}  // namespace polar::io
