// Seeded corruption campaign for parse_safetensors (see safetensors_corruption.h). Torch-free.
// Each mutation carries an expectation: Reject where the image is provably invalid (truncation,
// a changed length prefix, duplicate keys, ...), Accept where it provably stays valid (flips in
// data bytes, re-encoded whitespace), Either where it may land on something harmless.
#include "safetensors_corruption.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <set>
#include <utility>

#include "polar/common/error.h"
#include "polar/io/safetensors_format.h"

namespace polar::io::testing {

namespace {

using nlohmann::json;

// splitmix64: deterministic on every platform, unlike std:: distributions.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
  bool coin() { return next() & 1; }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }
};

enum class Expect { Either, Reject, Accept };

struct Base {
  std::string label;
  std::string image;
  json header;       // the parsed header, for structured rewrites
  std::string data;  // the data section
  uint64_t header_len = 0;
};

struct Mutant {
  std::string kind;
  std::string image;
  Expect expect = Expect::Either;
};

struct Spec {
  std::string name, dtype;
  std::vector<int64_t> shape;
};

std::string u64_le(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out;
}

Base make_base(const std::string& label, const std::vector<Spec>& specs,
               const std::map<std::string, std::string>& meta, bool padded, Rng& rng) {
  std::vector<TensorInfo> infos;
  uint64_t offset = 0;
  for (const Spec& s : specs) {
    uint64_t n = safetensors_dtype_size(s.dtype);
    for (int64_t d : s.shape) n *= static_cast<uint64_t>(d);
    infos.push_back({s.name, s.dtype, s.shape, offset, offset + n});
    offset += n;
  }
  std::string header = encode_safetensors_header(infos, meta).substr(8);
  if (!padded)
    header.erase(header.find_last_not_of(' ') + 1);  // odd length: unaligned data section
  Base b;
  b.label = label;
  b.data.resize(offset);
  for (char& c : b.data) c = static_cast<char>(rng.next() & 0xFF);
  b.header = json::parse(header);
  b.header_len = header.size();
  b.image = make_safetensors_image(header, b.data);
  return b;
}

std::vector<Base> make_bases(Rng& rng) {
  std::vector<Base> bases;
  bases.push_back(make_base("empty", {}, {}, true, rng));
  bases.push_back(
      make_base("metadata_only", {}, {{"format", "pt"}, {"note", "\xC3\xBCnicode"}}, true, rng));
  bases.push_back(make_base("mixed",
                            {{"w.f32", "F32", {2, 3}},
                             {"w.f16", "F16", {5}},
                             {"w.bf16", "BF16", {1, 4}},
                             {"step", "I64", {}},
                             {"mask", "BOOL", {3}},
                             {"empty.u8", "U8", {0}},
                             {"empty.i8", "I8", {2, 0, 3}},
                             {"d", "F64", {1}},
                             {"i32", "I32", {2, 2}},
                             {"i16", "I16", {3}},
                             {"u16", "U16", {2}},
                             {"u32", "U32", {1}},
                             {"u64", "U64", {}}},
                            {{"format", "pt"}}, true, rng));
  bases.push_back(make_base(
      "scalars_unpadded", {{"a", "F32", {}}, {"b", "BF16", {}}, {"c", "I64", {}}}, {}, false, rng));
  bases.push_back(make_base("zero_sized",
                            {{"z0", "F32", {0}}, {"z1", "BF16", {3, 0}}, {"z2", "I64", {0, 0, 0}}},
                            {}, true, rng));
  bases.push_back(make_base("odd_names",
                            {{"quote\"back\\slash", "U8", {3}},
                             {"w\xC3\xA9ight", "F16", {1}},
                             {"", "I8", {2}},
                             {"tab\tnew\nline", "I32", {1}}},
                            {{"k\"ey", "v\\al"}}, false, rng));
  std::vector<Spec> many;
  const std::vector<std::string> dtypes = {"F64", "F32", "F16", "BF16", "I64",
                                           "I32", "I16", "I8",  "U8",   "BOOL"};
  for (int i = 0; i < 40; ++i) {
    std::vector<int64_t> shape;
    for (uint64_t d = rng.below(4); d > 0; --d) shape.push_back(static_cast<int64_t>(rng.below(5)));
    many.push_back({"model.layers." + std::to_string(i / 4) + ".w" + std::to_string(i % 4),
                    rng.pick(dtypes), shape});
  }
  bases.push_back(make_base("many", many,
                            {{"format", "pt"}, {"a", "1"}, {"b", ""}, {"c", "x y"}, {"d", "{}"}},
                            true, rng));
  return bases;
}

// The tensor keys of a header (all but __metadata__).
std::vector<std::string> tensor_names(const json& header) {
  std::vector<std::string> out;
  for (const auto& [k, v] : header.items())
    if (k != "__metadata__") out.push_back(k);
  return out;
}

uint64_t entry_bytes(const json& entry) {
  return entry.at("data_offsets").at(1).get<uint64_t>() -
         entry.at("data_offsets").at(0).get<uint64_t>();
}

json random_non_integer(Rng& rng) {
  switch (rng.below(7)) {
    case 0:
      return -1 - static_cast<int64_t>(rng.below(1000));
    case 1:
      return 1.5;
    case 2:
      return "8";
    case 3:
      return nullptr;
    case 4:
      return json::array({1});
    case 5:
      return json::object();
    default:
      return 1e300;
  }
}

const std::vector<uint64_t> kHugeValues = {UINT64_MAX, UINT64_MAX - 7,
                                           1ull << 63, (1ull << 63) - 1,
                                           1ull << 32, kMaxSafetensorsHeaderBytes + 1,
                                           1ull << 40};

// Rewrites the parsed header of `b` (one structured change) and re-encodes it with its data.
Mutant rewrite_header(const Base& b, Rng& rng) {
  json h = b.header;
  const std::vector<std::string> names = tensor_names(h);
  Mutant m;
  m.expect = Expect::Reject;
  const uint64_t choice = rng.below(names.empty() ? 3 : 9);
  if (choice == 0) {  // root not an object
    m.kind = "root_not_object";
    const json alternatives[] = {json::array({h}), json("x"), json(7), json(nullptr),
                                 json::array()};
    h = alternatives[rng.below(5)];
  } else if (choice == 1) {  // bad __metadata__
    m.kind = "bad_metadata";
    if (rng.coin() || !h.contains("__metadata__") || h["__metadata__"].empty())
      h["__metadata__"] = rng.coin() ? json::array({"a"}) : json("format=pt");
    else
      h["__metadata__"][h["__metadata__"].begin().key()] = rng.pick(
          std::vector<json>{json(1), json(nullptr), json::array(), json::object(), json(true)});
  } else if (choice == 2) {  // an entry that is not a tensor description
    m.kind = "bad_entry";
    const json alternatives[] = {json(1), json("F32"), json::array({"F32", {1}, {0, 4}}),
                                 json(nullptr), json::object()};
    h[names.empty() ? "t" : rng.pick(names)] = alternatives[rng.below(5)];
  } else {
    const std::string name = rng.pick(names);
    json& e = h[name];
    const uint64_t nbytes = entry_bytes(e);
    if (choice == 3) {  // offsets shifted, swapped, stretched, huge or of the wrong type
      m.kind = "bad_offsets";
      json& off = e["data_offsets"];
      const uint64_t b0 = off[0].get<uint64_t>(), e0 = off[1].get<uint64_t>();
      switch (rng.below(6)) {
        case 0: {  // shift: a non-empty tensor then overlaps, leaves a hole or runs out of range
          const uint64_t delta = 1 + rng.below(rng.coin() ? 16 : 1u << 20);
          const bool up = rng.coin() || b0 < delta;
          off = {up ? b0 + delta : b0 - delta, up ? e0 + delta : e0 - delta};
          if (nbytes == 0) m.expect = Expect::Either;  // may land on another tensor boundary
          break;
        }
        case 1:
          off = {e0, b0};
          if (nbytes == 0) m.expect = Expect::Accept;
          break;
        case 2:
          off = {b0, e0 + 1 + rng.below(64)};
          break;
        case 3:
          off = {rng.pick(kHugeValues), rng.pick(kHugeValues)};
          break;
        case 4:
          off[rng.below(2)] = random_non_integer(rng);
          break;
        default:
          off = rng.coin() ? json::array({b0}) : json::array({b0, e0, e0});
          break;
      }
    } else if (choice == 4) {  // overlapping or duplicated ranges between two tensors
      m.kind = "overlap_offsets";
      const std::string other = rng.pick(names);
      const json& src = h[other]["data_offsets"];
      if (other == name || nbytes == 0 || entry_bytes(h[other]) == 0) m.expect = Expect::Either;
      const uint64_t b0 = src[0].get<uint64_t>();
      e["data_offsets"] = {b0, b0 + nbytes};
    } else if (choice == 5) {  // dtype unknown, not a string, or a known one of another size
      m.kind = "bad_dtype";
      const std::vector<std::string> dts = {"F128", "f32", "",   "FLOAT", "BF16 ", "I4",
                                            "C64",  "F32", "U8", "I64",   "BF16"};
      const uint64_t k = rng.below(dts.size() + 2);
      if (k >= dts.size()) {
        e["dtype"] = k == dts.size() ? json(4) : json(nullptr);
      } else {
        const std::string& dt = dts[k];
        if (safetensors_dtype_size(dt) != 0 &&
            (nbytes == 0 ||
             safetensors_dtype_size(dt) == safetensors_dtype_size(e["dtype"].get<std::string>())))
          m.expect = Expect::Either;
        e["dtype"] = dt;
      }
    } else if (choice == 6) {  // negative, huge, fractional, overflowing or mismatched shapes
      m.kind = "bad_shape";
      json& shape = e["shape"];
      switch (rng.below(6)) {
        case 0:
          shape.push_back(random_non_integer(rng));
          break;
        case 1:
          shape.push_back(rng.pick(kHugeValues));
          if (nbytes == 0) m.expect = Expect::Either;
          break;
        case 2:
          shape = json::array({1ull << 32, 1ull << 32, 1ull << 32});
          break;
        case 3:
          shape.push_back(2 + rng.below(5));
          if (nbytes == 0) m.expect = Expect::Either;
          break;
        case 4:
          shape = rng.coin() ? json("[2, 3]") : json(3);
          break;
        default:
          shape = json::array({json::array({1})});
          break;
      }
    } else if (choice == 7) {  // missing or unexpected keys
      m.kind = "bad_keys";
      if (rng.coin())
        e.erase(rng.pick(std::vector<std::string>{"dtype", "shape", "data_offsets"}));
      else
        e[rng.coin() ? "offsets" : "dtype2"] = 0;
    } else {  // the same key twice: nlohmann would keep the last, so it is spliced in as text
      m.kind = "duplicate_key";
      std::string text = h.dump();
      if (rng.coin()) {  // duplicate tensor name at the root
        text.insert(1, json(name).dump() + ":" + e.dump() + ",");
      } else {  // duplicate field inside one entry
        const std::string anchor = json(name).dump() + ":{";
        text.insert(text.find(anchor) + anchor.size(), "\"dtype\":" + e["dtype"].dump() + ",");
      }
      m.image = make_safetensors_image(text, b.data);
      return m;
    }
  }
  std::string text = h.dump();
  if (rng.coin()) text.append((8 - text.size() % 8) % 8, ' ');
  m.image = make_safetensors_image(text, b.data);
  return m;
}

Mutant mutate(const Base& b, Rng& rng) {
  const std::string& img = b.image;
  const uint64_t hdr_end = 8 + b.header_len;
  Mutant m;
  m.image = img;
  auto set_len = [&](uint64_t n) {
    m.image.replace(0, 8, u64_le(n));
    // Any other length moves the header/data border, so the tensors can no longer tile the data.
    m.expect = n == b.header_len ? Expect::Accept : Expect::Reject;
  };
  switch (rng.below(16)) {
    case 0:
      m.kind = "truncate";
      m.image.resize(rng.below(img.size()));
      m.expect = Expect::Reject;
      break;
    case 1: {
      m.kind = "flip_length_prefix";
      uint64_t n = b.header_len;
      for (uint64_t k = 1 + rng.below(3); k > 0; --k) n ^= 1ull << rng.below(64);
      set_len(n);
      break;
    }
    case 2:
      m.kind = "flip_header";
      for (uint64_t k = 1 + rng.below(4); k > 0; --k)
        m.image[8 + rng.below(b.header_len)] ^= static_cast<char>(1 << rng.below(8));
      break;
    case 3:
      m.kind = "flip_data";
      m.expect = Expect::Accept;
      for (uint64_t k = b.data.empty() ? 0 : 1 + rng.below(8); k > 0; --k)
        m.image[hdr_end + rng.below(b.data.size())] ^= static_cast<char>(1 << rng.below(8));
      break;
    case 4:
      m.kind = "huge_length";
      set_len(rng.coin() ? rng.pick(kHugeValues) : img.size() - 8 + 1 + rng.below(1000));
      break;
    case 5:
      m.kind = "length_off_by_small";
      set_len(rng.coin() ? b.header_len + 1 + rng.below(16)
                         : b.header_len - std::min(b.header_len, 1 + rng.below(16)));
      break;
    case 6: {
      m.kind = "bad_json_text";
      std::string text = img.substr(8, b.header_len);
      const char junk[] = {'{', '}', '[', ']', '"', '\\', ':', ',', '0', '-', 'e', ' ', '\x01'};
      switch (rng.below(5)) {
        case 0:
          text.erase(rng.below(text.size()), 1);
          break;
        case 1:
          text.insert(rng.below(text.size() + 1), 1, junk[rng.below(sizeof(junk))]);
          break;
        case 2:
          text[rng.below(text.size())] = junk[rng.below(sizeof(junk))];
          break;
        case 3:
          text.resize(rng.below(text.size()));
          break;
        default:  // invalid UTF-8 or a NUL byte is wrong anywhere in a JSON text
          text.insert(rng.below(text.size() + 1), 1,
                      rng.pick(std::vector<char>{'\xFF', '\xC0', '\x80', '\0'}));
          m.expect = Expect::Reject;
          break;
      }
      m.image = make_safetensors_image(text, b.data);
      break;
    }
    case 7: {
      m.kind = "deep_nesting";
      const uint64_t depth = 10 + rng.below(rng.coin() ? 100 : 200000);
      const std::string open = rng.coin() ? "[" : "{\"a\":";
      std::string text;
      for (uint64_t i = 0; i < depth; ++i) text += open;
      m.image = make_safetensors_image(text + "1", b.data);
      m.expect = Expect::Reject;
      break;
    }
    case 8:
      m.kind = "resize_data";
      if (b.data.empty() || rng.coin())
        m.image.append(1 + rng.below(16), '\0');
      else
        m.image.resize(img.size() - std::min<uint64_t>(b.data.size(), 1 + rng.below(16)));
      m.expect = Expect::Reject;
      break;
    case 9: {
      m.kind = "reencode_whitespace";  // same header, other valid formatting
      std::string text = b.header.dump(rng.coin() ? 2 : -1);
      text = std::string(rng.below(4), ' ') + text +
             std::string(rng.below(9), rng.coin() ? ' ' : '\n');
      m.image = make_safetensors_image(text, b.data);
      m.expect = Expect::Accept;
      break;
    }
    case 10: {
      m.kind = "rewrite_twice";  // two structured changes: the second may undo the first
      const Mutant first = rewrite_header(b, rng);
      m.image = first.image;
      try {  // the second change assumes a well-formed entry; when it is not, keep the first
        Base tmp = b;
        tmp.header_len = first.image.size() - b.data.size() - 8;
        tmp.header = json::parse(first.image.substr(8, tmp.header_len));
        m.image = rewrite_header(tmp, rng).image;
      } catch (const json::exception&) {
      }
      break;
    }
    case 11:
      m.kind = "random_bytes";
      for (uint64_t k = 1 + rng.below(32); k > 0; --k)
        m.image[rng.below(img.size())] = static_cast<char>(rng.next());
      break;
    default: {
      Mutant r = rewrite_header(b, rng);
      r.kind = "rewrite:" + r.kind;
      return r;
    }
  }
  return m;
}

const std::vector<std::pair<std::string, std::string>>& error_phrases() {
  static const std::vector<std::pair<std::string, std::string>> phrases = {
      {"shorter than the 8-byte", "short_file"},
      {"exceeds the limit", "header_too_long"},
      {"runs past the end", "header_past_end"},
      {"nesting deeper", "deep_nesting"},
      {"duplicate key", "duplicate_key"},
      {"invalid JSON", "invalid_json"},
      {"must be a JSON object", "root_not_object"},
      {"__metadata__ ", "bad_metadata"},
      {"entry must be an object", "entry_not_object"},
      {"unexpected key", "unexpected_key"},
      {"missing key", "missing_key"},
      {"dtype must be a string", "dtype_not_string"},
      {"unknown dtype", "unknown_dtype"},
      {"shape must be", "bad_shape"},
      {"does not fit a signed", "dim_too_large"},
      {"overflows 64 bits", "overflow"},
      {"data_offsets must be", "bad_offsets"},
      {"begin > end", "begin_after_end"},
      {"bytes but shape", "size_mismatch"},
      {"reach beyond", "out_of_range"},
      {"overlap", "overlap"},
      {"leave a hole", "hole"},
      {"trailing bytes", "trailing_bytes"},
  };
  return phrases;
}

std::string classify(const std::string& message) {
  for (const auto& [phrase, cls] : error_phrases())
    if (message.find(phrase) != std::string::npos) return cls;
  return "other";
}

// Independent of the parser: names unique, dtypes known, sizes consistent, tiling exact, sorted.
std::string check_result(const std::vector<TensorInfo>& tensors, uint64_t data_size) {
  std::set<std::string> names;
  uint64_t cursor = 0;
  for (const TensorInfo& t : tensors) {
    if (!names.insert(t.name).second) return "duplicate name " + t.name;
    if (t.name == "__metadata__") return "tensor named __metadata__";
    uint64_t n = safetensors_dtype_size(t.dtype);
    if (n == 0) return "unknown dtype " + t.dtype;
    for (int64_t d : t.shape)
      if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return "bad shape";
    if (t.begin != cursor || t.end < t.begin || t.end - t.begin != n)
      return "offsets do not tile: " + t.name;
    cursor = t.end;
  }
  return cursor == data_size ? "" : "data section not covered";
}

}  // namespace

std::string make_safetensors_image(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

const std::vector<std::string>& corruption_error_classes() {
  static const std::vector<std::string> classes = [] {
    std::vector<std::string> out;
    for (const auto& p : error_phrases()) out.push_back(p.second);
    return out;
  }();
  return classes;
}

CampaignResult run_corruption_campaign(uint64_t seed, uint64_t n_files) {
  Rng rng{seed};
  const std::vector<Base> bases = make_bases(rng);
  CampaignResult result;
  for (const Base& b : bases) result.base_labels.push_back(b.label);
  for (uint64_t i = 0; i < n_files; ++i) {
    const Base& base = bases[rng.below(bases.size())];
    const Mutant m = mutate(base, rng);
    const std::string where = "mutant" + std::to_string(i) + ".safetensors";
    const std::string tag = where + " (" + base.label + ", " + m.kind + ")";
    ++result.mutations;
    ++result.by_kind[m.kind];
    // An exactly sized heap copy, so that a read past the end is caught by ASan.
    std::unique_ptr<uint8_t[]> buf(new uint8_t[m.image.size()]);
    if (!m.image.empty()) std::memcpy(buf.get(), m.image.data(), m.image.size());
    try {
      std::map<std::string, std::string> meta;
      const std::vector<TensorInfo> tensors =
          parse_safetensors(buf.get(), m.image.size(), where, &meta);
      ++result.accepted;
      const uint64_t data_size =
          m.image.size() - safetensors_data_offset(buf.get(), m.image.size());
      if (std::string why = check_result(tensors, data_size); !why.empty())
        result.failures.push_back(tag + ": accepted but invalid: " + why);
      if (m.expect == Expect::Reject)
        result.failures.push_back(tag + ": accepted a provably invalid image");
    } catch (const Error& e) {
      ++result.rejected;
      const std::string msg = e.what();
      ++result.by_error[classify(msg)];
      if (msg.rfind(where + ": ", 0) != 0)
        result.failures.push_back(tag + ": message does not name the file: " + msg);
      if (m.expect == Expect::Accept)
        result.failures.push_back(tag + ": rejected a valid image: " + msg);
    } catch (const std::exception& e) {
      result.failures.push_back(tag + ": unexpected exception: " + e.what());
    } catch (...) {
      result.failures.push_back(tag + ": unexpected non-standard exception");
    }
  }
  return result;
}

}  // namespace polar::io::testing
