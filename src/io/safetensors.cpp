// safetensors files with torch: read-only mmap + validated header (safetensors_parse.cpp), owning
// tensor copies, atomic streaming writes, and the Hugging Face sharded layout
// (model-0000i-of-0000n.safetensors + model.safetensors.index.json).
#include "polar/io/safetensors.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <unordered_map>

#include "polar/common/error.h"
#include "polar/common/json_config.h"

namespace polar::io {

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error \
    "safetensors data is little-endian; tensor bytes are copied as-is, so a little-endian host is required"
#endif

namespace {

struct DtypeMapping {
  const char* name;
  c10::ScalarType type;
};
const DtypeMapping kTorchDtypes[] = {
    {"F64", torch::kFloat64},
    {"F32", torch::kFloat32},
    {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16},
    {"I64", torch::kInt64},
    {"I32", torch::kInt32},
    {"I16", torch::kInt16},
    {"I8", torch::kInt8},
    {"U8", torch::kUInt8},
    {"BOOL", torch::kBool},
    {"U16", torch::kUInt16},
    {"U32", torch::kUInt32},
    {"U64", torch::kUInt64},
    {"F8_E4M3", torch::kFloat8_e4m3fn},
    {"F8_E5M2", torch::kFloat8_e5m2},
};

c10::ScalarType torch_dtype(const std::string& dtype, const std::string& where) {
  for (const auto& m : kTorchDtypes)
    if (dtype == m.name) return m.type;
  throw Error(where + ": dtype " + dtype + " has no torch equivalent");
}

std::string safetensors_dtype(c10::ScalarType type, const std::string& where) {
  for (const auto& m : kTorchDtypes)
    if (type == m.type) return m.name;
  throw Error(where + ": cannot write dtype " + std::string(c10::toString(type)) +
              " (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL U16 U32 U64 F8_E4M3 F8_E5M2)");
}

std::string errno_text() { return std::strerror(errno); }

// File-system helpers on plain POSIX calls: libtorch.so exports its own copies of several
// std::filesystem functions (remove_all crashes when they bind first), so this file avoids them.
bool stat_path(const std::string& path, mode_t type) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && (type == 0 || (st.st_mode & S_IFMT) == type);
}
bool path_exists(const std::string& path) { return stat_path(path, 0); }
bool is_regular(const std::string& path) { return stat_path(path, S_IFREG); }
bool is_dir(const std::string& path) { return stat_path(path, S_IFDIR); }

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void make_dirs(const std::string& dir) {
  for (size_t pos = dir.find('/', 1);; pos = dir.find('/', pos + 1)) {
    const std::string prefix = dir.substr(0, pos);
    if (!prefix.empty() && ::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
      throw Error(dir + ": cannot create directory " + prefix + ": " + errno_text());
    if (pos == std::string::npos) break;
  }
  POLAR_CHECK(is_dir(dir), dir, ": not a directory");
}

void remove_if_present(const std::string& path) {
  POLAR_CHECK(::unlink(path.c_str()) == 0 || errno == ENOENT, path,
              ": cannot remove: ", errno_text());
}

// A file written under a temporary name in the destination directory and renamed into place
// only after fsync, so readers see either the old file or the complete new one.
class AtomicWriter {
 public:
  explicit AtomicWriter(const std::string& path) : path_(path), tmp_(path + ".tmp.XXXXXX") {
    fd_ = ::mkstemp(tmp_.data());
    POLAR_CHECK(fd_ >= 0, path, ": cannot create a temporary file beside it: ", errno_text());
    ::fchmod(fd_, 0644);
  }
  ~AtomicWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      POLAR_CHECK(w > 0, path_, ": write failed: ", errno_text());
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  void commit() {
    POLAR_CHECK(::fsync(fd_) == 0, path_, ": fsync failed: ", errno_text());
    const int rc = ::close(fd_);
    fd_ = -1;
    POLAR_CHECK(rc == 0, path_, ": close failed: ", errno_text());
    POLAR_CHECK(std::rename(tmp_.c_str(), path_.c_str()) == 0, path_,
                ": cannot rename the temporary file into place: ", errno_text());
    committed_ = true;
    // Persist the rename itself.
    const int dir = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

uint64_t tensor_bytes(const torch::Tensor& t) {
  return static_cast<uint64_t>(t.numel()) * t.element_size();
}

void check_writable(const std::string& where, const std::string& name, const torch::Tensor& t) {
  POLAR_CHECK(t.defined(), where, ": tensor '", name, "' is undefined");
  POLAR_CHECK(t.layout() == torch::kStrided, where, ": tensor '", name,
              "' is not a dense (strided) tensor");
}

}  // namespace

struct SafetensorsFile::Impl {
  std::string path;
  void* map = nullptr;
  uint64_t size = 0;
  uint64_t data_offset = 0;
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  std::unordered_map<std::string, size_t> index;
  ~Impl() {
    if (map) ::munmap(map, size);
  }
};

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  POLAR_CHECK(fd >= 0, path, ": cannot open: ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  impl->size = static_cast<uint64_t>(st.st_size);
  if (impl->size > 0) {
    void* map = ::mmap(nullptr, impl->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      const std::string why = errno_text();
      ::close(fd);
      throw Error(path + ": mmap failed: " + why);
    }
    impl->map = map;
  }
  ::close(fd);  // the mapping stays valid without the descriptor
  const auto* bytes = static_cast<const uint8_t*>(impl->map);
  impl->tensors = parse_safetensors(bytes, impl->size, path, &impl->metadata);
  impl->data_offset = safetensors_data_offset(bytes, impl->size);
  for (size_t i = 0; i < impl->tensors.size(); ++i) impl->index.emplace(impl->tensors[i].name, i);
  SafetensorsFile f;
  f.impl_ = std::move(impl);
  return f;
}

const std::vector<TensorInfo>& SafetensorsFile::tensors() const { return impl_->tensors; }
const std::map<std::string, std::string>& SafetensorsFile::metadata() const {
  return impl_->metadata;
}
const std::string& SafetensorsFile::path() const { return impl_->path; }
bool SafetensorsFile::contains(const std::string& name) const {
  return impl_->index.count(name) > 0;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = impl_->index.find(name);
  POLAR_CHECK(it != impl_->index.end(), impl_->path, ": no tensor '", name, "' (the file holds ",
              impl_->tensors.size(), " tensors)");
  return impl_->tensors[it->second];
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& ti = info(name);
  const std::string where = impl_->path + ": tensor '" + name + "'";
  const c10::ScalarType dtype = torch_dtype(ti.dtype, where);
  torch::Tensor t;
  try {
    t = torch::empty(ti.shape, torch::TensorOptions().dtype(dtype));
  } catch (const c10::Error& e) {
    // A zero-size shape may still have dimensions whose strides overflow (e.g. [0, 2^62, 2^62]).
    throw Error(where + ": cannot create a tensor of this shape: " + e.what_without_backtrace());
  }
  const uint64_t nbytes = ti.end - ti.begin;
  POLAR_CHECK(tensor_bytes(t) == nbytes, where, ": size mismatch");  // guaranteed by the parser
  if (nbytes == 0) return t;
  // memcpy, not a typed view: the data section need not be aligned (headers may have any length).
  const uint8_t* src = static_cast<const uint8_t*>(impl_->map) + impl_->data_offset + ti.begin;
  if (ti.dtype == "BOOL") {
    // A bool byte other than 0/1 is undefined behaviour in torch ops, so it is refused here.
    for (uint64_t i = 0; i < nbytes; ++i)
      POLAR_CHECK(src[i] <= 1, where, ": BOOL element ", i, " is byte ", static_cast<int>(src[i]),
                  " (expected 0 or 1)");
  }
  std::memcpy(t.data_ptr(), src, nbytes);
  return t;
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<TensorInfo> infos;
  infos.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    check_writable(path, name, t);
    const uint64_t n = tensor_bytes(t);
    infos.push_back({name, safetensors_dtype(t.scalar_type(), path + ": tensor '" + name + "'"),
                     t.sizes().vec(), offset, offset + n});
    offset += n;
  }
  std::string header;
  try {
    header = encode_safetensors_header(infos, metadata);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  AtomicWriter out(path);
  out.write(header.data(), header.size());
  for (const auto& [name, t] : tensors) {
    // One contiguous CPU copy at a time keeps peak memory near the largest tensor.
    const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    if (c.numel() > 0) out.write(c.data_ptr(), tensor_bytes(c));
  }
  out.commit();
}

namespace {

std::map<std::string, torch::Tensor> load_file(const std::string& path) {
  const SafetensorsFile f = SafetensorsFile::open(path);
  std::map<std::string, torch::Tensor> out;
  for (const TensorInfo& ti : f.tensors()) out.emplace(ti.name, f.tensor(ti.name));
  return out;
}

std::map<std::string, torch::Tensor> load_index(const std::string& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  POLAR_CHECK(in, index_path, ": cannot open");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  POLAR_CHECK(text.size() <= kMaxSafetensorsHeaderBytes, index_path, ": index larger than ",
              kMaxSafetensorsHeaderBytes, " bytes");
  const nlohmann::json root =
      detail::parse_json_strict(text.data(), text.data() + text.size(), index_path, 8);
  POLAR_CHECK(root.is_object(), index_path, ": expected a JSON object with \"weight_map\"");
  POLAR_CHECK(root.contains("weight_map") && root["weight_map"].is_object(), index_path,
              ": \"weight_map\" must be an object {tensor name: shard file}");
  const nlohmann::json& weight_map = root["weight_map"];
  POLAR_CHECK(!weight_map.empty(), index_path, ": \"weight_map\" is empty");
  std::optional<uint64_t> total_size;
  if (root.contains("metadata")) {
    const nlohmann::json& meta = root["metadata"];
    POLAR_CHECK(meta.is_object(), index_path, ": \"metadata\" must be an object");
    if (meta.contains("total_size")) {
      POLAR_CHECK(meta["total_size"].is_number() && meta["total_size"].get<double>() >= 0,
                  index_path, ": metadata.total_size must be a non-negative number");
      if (meta["total_size"].is_number_unsigned()) total_size = meta["total_size"].get<uint64_t>();
    }
  }

  // file -> names the index maps to it
  std::map<std::string, std::set<std::string>> by_file;
  for (const auto& [name, file] : weight_map.items()) {
    POLAR_CHECK(file.is_string(), index_path, ": weight_map['", name,
                "'] must be a file name string");
    const std::string f = file.get<std::string>();
    // Shards live beside the index: a path component would let an untrusted index read elsewhere.
    POLAR_CHECK(!f.empty() && f != "." && f != ".." && f.find('/') == std::string::npos &&
                    f.find('\0') == std::string::npos,
                index_path, ": weight_map['", name, "'] = '", f,
                "' must be a plain file name in the index's directory");
    by_file[f].insert(name);
  }
  const std::string dir = parent_dir(index_path);
  for (const auto& [file, names] : by_file)
    POLAR_CHECK(is_regular(join_path(dir, file)), index_path, ": weight_map names '", file,
                "' (for tensor '", *names.begin(), "'), which does not exist as a file in ", dir);
  std::map<std::string, torch::Tensor> out;
  uint64_t bytes = 0;
  for (const auto& [file, names] : by_file) {
    const SafetensorsFile f = SafetensorsFile::open(join_path(dir, file));
    for (const std::string& name : names)
      POLAR_CHECK(f.contains(name), index_path, ": tensor '", name, "' is mapped to '", file,
                  "' but that file does not contain it");
    for (const TensorInfo& ti : f.tensors()) {
      POLAR_CHECK(names.count(ti.name), index_path, ": '", file, "' holds tensor '", ti.name,
                  "', which the index ",
                  weight_map.contains(ti.name) ? "maps to another file" : "does not list");
      out.emplace(ti.name, f.tensor(ti.name));
      bytes += ti.end - ti.begin;
    }
  }
  if (total_size && *total_size != bytes)
    spdlog::warn("{}: metadata.total_size is {} but the tensors hold {} bytes", index_path,
                 *total_size, bytes);
  return out;
}

constexpr const char* kSingleName = "model.safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::map<std::string, torch::Tensor> load_safetensors_any(const std::string& path) {
  POLAR_CHECK(path_exists(path), path, ": no such file or directory");
  if (is_regular(path)) return ends_with(path, ".index.json") ? load_index(path) : load_file(path);
  POLAR_CHECK(is_dir(path), path, ": not a file or directory");
  const std::string single = join_path(path, kSingleName), index = join_path(path, kIndexName);
  const bool has_single = path_exists(single), has_index = path_exists(index);
  POLAR_CHECK(!(has_single && has_index), path, ": ambiguous checkpoint: both ", kSingleName,
              " and ", kIndexName, " exist; remove the stale one");
  if (has_single) return load_file(single);
  POLAR_CHECK(has_index, path, ": no ", kSingleName, " or ", kIndexName, " in this directory");
  return load_index(index);
}

void save_safetensors_sharded(const std::string& dir,
                              const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              uint64_t max_shard_bytes,
                              const std::map<std::string, std::string>& metadata) {
  POLAR_CHECK(max_shard_bytes > 0, dir, ": max_shard_bytes must be positive");
  make_dirs(dir);
  const std::string single = join_path(dir, kSingleName), index = join_path(dir, kIndexName);

  // Greedy in order: a new shard starts when the next tensor would overflow a non-empty one.
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> shards(1);
  uint64_t total = 0, current = 0;
  std::set<std::string> names;
  for (const auto& item : tensors) {
    check_writable(dir, item.first, item.second);
    POLAR_CHECK(names.insert(item.first).second, dir, ": duplicate tensor name '", item.first, "'");
    const uint64_t n = tensor_bytes(item.second);
    if (!shards.back().empty() && current + n > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(item);
    current += n;
    total += n;
  }
  if (shards.size() == 1) {
    save_safetensors(single, tensors, metadata);
    remove_if_present(index);
    return;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    save_safetensors(join_path(dir, name), shards[i], metadata);
    for (const auto& item : shards[i]) weight_map[item.first] = name;
  }
  write_json_file_atomic(index,
                         {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}});
  remove_if_present(single);
  spdlog::debug("{}: wrote {} shards, {} bytes", dir, shards.size(), total);
}

}  // namespace polar::io
