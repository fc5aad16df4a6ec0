// Small helpers shared by the safetensors tests: a scratch directory and byte-exact tensor views.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ftw.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace polar::io::testing {

// A fresh directory under /tmp, removed with everything in it when the object goes away (by nftw:
// std::filesystem::remove_all binds to a broken copy exported by libtorch.so and crashes).
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/polar-safetensors-test.XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    if (p == nullptr) throw std::runtime_error("mkdtemp failed");
    path = p;
  }
  ~TempDir() {
    ::nftw(
        path.c_str(),
        [](const char* p, const struct stat*, int, struct FTW*) { return std::remove(p); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// The raw bytes of a tensor (contiguous, CPU): equality here is bit-exact, NaN payloads included.
inline std::string tensor_bytes_of(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
  std::string out(static_cast<size_t>(c.numel()) * c.element_size(), '\0');
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size());
  return out;
}

// A tensor of `dtype` filled with seeded random bytes (every bit pattern, NaNs included); BOOL gets
// 0/1.
inline torch::Tensor random_bytes_tensor(torch::ScalarType dtype, c10::IntArrayRef shape,
                                         uint64_t seed) {
  torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  const int64_t n = t.numel() * static_cast<int64_t>(t.element_size());
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor bytes = torch::randint(0, dtype == torch::kBool ? 2 : 256, {n}, gen, torch::kUInt8);
  if (n > 0) std::memcpy(t.data_ptr(), bytes.data_ptr(), static_cast<size_t>(n));
  return t;
}

inline std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_file_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace polar::io::testing
