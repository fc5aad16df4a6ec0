// safetensors header parsing and validation for untrusted files, and the header encoder.
// Torch-free on purpose (nlohmann json + the standard library only) so the ASan/UBSan corruption
// campaign in scripts/asan_safetensors.sh can build this file alone.
#include "polar/io/safetensors_format.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "polar/common/error.h"

namespace polar::io {

namespace {

using nlohmann::json;

// Deeper nesting is never valid (root -> entry -> list is 3 levels); the margin lets a shape such
// as [[1]] reach the more helpful "shape must be ..." message instead of a depth error.
constexpr int kMaxHeaderDepth = 16;

struct DtypeEntry {
  const char* name;
  uint64_t size;
};
constexpr DtypeEntry kDtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2},    {"I64", 8},
    {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},      {"BOOL", 1},
    {"U16", 2}, {"U32", 4}, {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

std::string dtype_list() {
  std::string out;
  for (const auto& d : kDtypes) out += (out.empty() ? "" : " ") + std::string(d.name);
  return out;
}

// A name for messages: quoted and cut short, since names come from the untrusted file.
std::string quote_name(const std::string& s) {
  constexpr size_t kMax = 120;
  if (s.size() <= kMax) return "'" + s + "'";
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // keep UTF-8 whole
  return "'" + s.substr(0, cut) + "...'";
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string range_str(uint64_t b, uint64_t e) {
  return "[" + std::to_string(b) + ", " + std::to_string(e) + "]";
}

// A JSON integer >= 0 that fits u64; nlohmann stores non-negative integers as number_unsigned,
// floats (3.0, 1e3) and integers beyond u64 as number_float, which are rejected here.
bool as_u64(const json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {  // "-0"
    out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

TensorInfo parse_entry(const std::string& where, const std::string& name, const json& entry) {
  const std::string at = where + ": tensor " + quote_name(name) + ": ";
  POLAR_CHECK(entry.is_object(), at,
              "entry must be an object {\"dtype\", \"shape\", \"data_offsets\"}, got ",
              entry.type_name());
  for (const auto& [key, value] : entry.items()) {
    (void)value;
    POLAR_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", at, "unexpected key ",
                quote_name(key), " (expected dtype, shape, data_offsets)");
  }
  for (const char* key : {"dtype", "shape", "data_offsets"})
    POLAR_CHECK(entry.contains(key), at, "missing key \"", key, "\"");

  TensorInfo info;
  info.name = name;
  const json& dtype = entry.at("dtype");
  POLAR_CHECK(dtype.is_string(), at, "dtype must be a string, got ", dtype.type_name());
  info.dtype = dtype.get<std::string>();
  const uint64_t elem_size = safetensors_dtype_size(info.dtype);
  POLAR_CHECK(elem_size != 0, at, "unknown dtype ", quote_name(info.dtype), " (expected one of ",
              dtype_list(), ")");

  const json& shape = entry.at("shape");
  POLAR_CHECK(shape.is_array(), at, "shape must be a list of non-negative integers, got ",
              shape.type_name());
  uint64_t numel = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    uint64_t dim = 0;
    POLAR_CHECK(as_u64(shape[i], dim), at,
                "shape must be a list of non-negative integers; dimension ", i, " is ",
                shape[i].dump(-1, ' ', false, json::error_handler_t::replace));
    POLAR_CHECK(dim <= static_cast<uint64_t>(INT64_MAX), at, "shape dimension ", i, " = ", dim,
                " does not fit a signed 64-bit size");
    info.shape.push_back(static_cast<int64_t>(dim));
    // Checked like the reference implementation: any intermediate overflow is an error.
    POLAR_CHECK(!__builtin_mul_overflow(numel, dim, &numel), at, "element count of shape ",
                shape.dump(-1, ' ', false, json::error_handler_t::replace), " overflows 64 bits");
  }
  uint64_t nbytes = 0;
  POLAR_CHECK(!__builtin_mul_overflow(numel, elem_size, &nbytes), at, "byte size of shape ",
              shape_str(info.shape), " x ", elem_size, " bytes overflows 64 bits");

  const json& offsets = entry.at("data_offsets");
  POLAR_CHECK(offsets.is_array() && offsets.size() == 2 && as_u64(offsets[0], info.begin) &&
                  as_u64(offsets[1], info.end),
              at, "data_offsets must be two non-negative integers [begin, end], got ",
              offsets.dump(-1, ' ', false, json::error_handler_t::replace));
  POLAR_CHECK(info.begin <= info.end, at, "data_offsets ", range_str(info.begin, info.end),
              " has begin > end");
  POLAR_CHECK(info.end - info.begin == nbytes, at, "data_offsets ", range_str(info.begin, info.end),
              " span ", info.end - info.begin, " bytes but shape ", shape_str(info.shape), " of ",
              info.dtype, " needs ", nbytes, " bytes");
  return info;
}

void parse_metadata(const std::string& where, const json& value,
                    std::map<std::string, std::string>* metadata) {
  POLAR_CHECK(value.is_object(), where, ": __metadata__ must be an object of strings, got ",
              value.type_name());
  for (const auto& [key, v] : value.items()) {
    POLAR_CHECK(v.is_string(), where, ": __metadata__ value for key ", quote_name(key),
                " must be a string, got ", v.type_name());
    if (metadata) (*metadata)[key] = v.get<std::string>();
  }
}

}  // namespace

uint64_t safetensors_dtype_size(const std::string& dtype) {
  for (const auto& d : kDtypes)
    if (dtype == d.name) return d.size;
  return 0;
}

namespace detail {

nlohmann::json parse_json_strict(const char* begin, const char* end, const std::string& where,
                                 int max_depth) {
  // One key set per open object; nlohmann reports every key before it overwrites a duplicate.
  std::vector<std::set<std::string>> open_objects;
  int depth = 0;
  auto callback = [&](int, json::parse_event_t event, json& parsed) -> bool {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        POLAR_CHECK(++depth <= max_depth, where, ": JSON nesting deeper than ", max_depth,
                    " levels");
        if (event == json::parse_event_t::object_start) open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        --depth;
        open_objects.pop_back();
        break;
      case json::parse_event_t::array_end:
        --depth;
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        POLAR_CHECK(!open_objects.empty() && open_objects.back().insert(key).second, where,
                    ": duplicate key ", quote_name(key), " in JSON object");
        break;
      }
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  // nlohmann stops at a NUL byte as if the input ended there, which would hide whatever follows.
  if (const void* nul = std::memchr(begin, '\0', static_cast<size_t>(end - begin)))
    throw Error(where + ": invalid JSON: NUL byte at offset " +
                std::to_string(static_cast<const char*>(nul) - begin));
  try {
    return json::parse(begin, end, callback, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    throw Error(where + ": invalid JSON: " + e.what());
  }
}

}  // namespace detail

std::vector<TensorInfo> parse_safetensors(const uint8_t* data, uint64_t size,
                                          const std::string& where,
                                          std::map<std::string, std::string>* metadata) {
  POLAR_CHECK(data != nullptr || size == 0, where, ": no data");
  POLAR_CHECK(size >= 8, where, ": file is ", size,
              " bytes, shorter than the 8-byte header length prefix");
  const uint64_t header_len = read_u64_le(data);
  POLAR_CHECK(header_len <= kMaxSafetensorsHeaderBytes, where, ": header length ", header_len,
              " exceeds the limit of ", kMaxSafetensorsHeaderBytes, " bytes");
  POLAR_CHECK(header_len <= size - 8, where, ": header length ", header_len,
              " runs past the end of the file (", size, " bytes, at most ", size - 8,
              " available after the length prefix)");
  const uint64_t data_size = size - 8 - header_len;

  const char* text = reinterpret_cast<const char*>(data + 8);
  const json root =
      detail::parse_json_strict(text, text + header_len, where + ": header", kMaxHeaderDepth);
  POLAR_CHECK(root.is_object(), where, ": header must be a JSON object, got ", root.type_name());

  if (metadata) metadata->clear();
  std::vector<TensorInfo> tensors;
  tensors.reserve(root.size());
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      parse_metadata(where, entry, metadata);
      continue;
    }
    tensors.push_back(parse_entry(where, name, entry));
    const TensorInfo& t = tensors.back();
    POLAR_CHECK(t.end <= data_size, where, ": tensor ", quote_name(name), ": data_offsets ",
                range_str(t.begin, t.end), " reach beyond the data section of ", data_size,
                " bytes");
  }

  // Sorted by (begin, end) the tensors must tile [0, data_size): no overlap, no hole, no tail.
  // Zero-size tensors may share an offset with each other or with a tensor's start.
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t cursor = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : tensors) {
    POLAR_CHECK(t.begin >= cursor, where, ": tensor ", quote_name(t.name), ": data_offsets ",
                range_str(t.begin, t.end), " overlap tensor ", quote_name(prev ? prev->name : ""),
                " ", prev ? range_str(prev->begin, prev->end) : std::string());
    POLAR_CHECK(t.begin == cursor, where, ": tensor ", quote_name(t.name), ": data_offsets ",
                range_str(t.begin, t.end), " leave a hole: bytes [", cursor, ", ", t.begin,
                ") of the data section belong to no tensor");
    cursor = t.end;
    if (t.end > t.begin) prev = &t;
  }
  POLAR_CHECK(cursor == data_size, where, ": data section has ", data_size - cursor,
              " trailing bytes [", cursor, ", ", data_size, ") not covered by any tensor");
  return tensors;
}

uint64_t safetensors_data_offset(const uint8_t* data, uint64_t size) {
  POLAR_CHECK(size >= 8, "safetensors image shorter than 8 bytes");
  return 8 + read_u64_le(data);
}

std::string encode_safetensors_header(const std::vector<TensorInfo>& tensors,
                                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (const TensorInfo& t : tensors) {
    POLAR_CHECK(t.name != "__metadata__",
                "safetensors: a tensor may not be named \"__metadata__\"");
    POLAR_CHECK(!header.contains(t.name), "safetensors: duplicate tensor name ",
                quote_name(t.name));
    POLAR_CHECK(safetensors_dtype_size(t.dtype) != 0, "safetensors: tensor ", quote_name(t.name),
                ": unknown dtype ", quote_name(t.dtype));
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    throw Error(std::string("safetensors: tensor name or metadata is not valid UTF-8: ") +
                e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + text;
}

}  // namespace polar::io
