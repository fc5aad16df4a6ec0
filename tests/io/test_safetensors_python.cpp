// Cross-check with the reference implementation (the `safetensors` Python package and numpy in
// the project venv): files written by polar are read by Python and files written by Python are
// read by polar, comparing dtype, shape, metadata and raw bytes (bit-exact, NaN payloads included).
// Skipped when the venv python or the package is missing (scripts/setup.sh installs both).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>

#include "polar/io/safetensors.h"
#include "safetensors_test_util.h"

namespace polar::io {
namespace {

using testing::random_bytes_tensor;
using testing::read_file_bytes;
using testing::TempDir;
using testing::tensor_bytes_of;
using testing::write_file_bytes;
using StringMap = std::map<std::string, std::string>;

const char* kPython = POLAR_SOURCE_DIR "/.venv/bin/python";

// Uses the package's own byte-level API (deserialize/serialize, the Rust reference code) and
// numpy, not safetensors.torch: importing torch would cost seconds per run.
const char* kScript = R"PY(
import json, sys
import numpy as np
from safetensors import TensorSpec, deserialize, safe_open, serialize

out = sys.argv[1]

# 1. Read the file polar wrote.
with open(out + "/from_polar.safetensors", "rb") as f:
    tensors = deserialize(f.read())
with safe_open(out + "/from_polar.safetensors", framework="numpy") as f:
    meta = f.metadata()
read = {"metadata": meta,
        "tensors": {k: {"dtype": v["dtype"], "shape": v["shape"], "hex": bytes(v["data"]).hex()} for k, v in tensors}}
json.dump(read, open(out + "/read_by_python.json", "w"))

# 2. Write a file for polar to read. BF16 is given as its raw 16-bit patterns (numpy has no bfloat16).
rng = np.random.default_rng(0)
special = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4e38], dtype=np.float32)
f32 = np.concatenate([rng.standard_normal(9).astype(np.float32), special]).reshape(3, 5)
arrays = {
    "f32": ("float32", f32),
    "f16": ("float16", rng.standard_normal(7).astype(np.float16)),
    "bf16": ("bfloat16", (rng.standard_normal((2, 3)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)),
    "i64": ("int64", rng.integers(-2**62, 2**62, size=4, dtype=np.int64)),
    "f32.scalar": ("float32", np.array(3.5, dtype=np.float32)),
    "bf16.scalar": ("bfloat16", np.array(0xBFA0, dtype=np.uint16)),
    "i64.scalar": ("int64", np.array(-2**63, dtype=np.int64)),
    "f16.empty": ("float16", np.zeros((0, 3), dtype=np.float16)),
}
arrays = {k: (dt, np.ascontiguousarray(a)) for k, (dt, a) in arrays.items()}
specs = {k: TensorSpec(dtype=dt, shape=list(a.shape), data_ptr=a.ctypes.data, data_len=a.nbytes)
         for k, (dt, a) in arrays.items()}
meta = {"format": "pt", "writer": "python"}
with open(out + "/from_python.safetensors", "wb") as f:
    f.write(serialize(specs, metadata=meta))
names = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64"}
written = {"metadata": meta,
           "tensors": {k: {"dtype": names[dt], "shape": list(a.shape), "hex": a.tobytes().hex()}
                       for k, (dt, a) in arrays.items()}}
json.dump(written, open(out + "/written_by_python.json", "w"))
)PY";

std::string hex_of(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) out += {digits[c >> 4], digits[c & 15]};
  return out;
}

bool reference_available() {
  if (!std::filesystem::exists(kPython)) return false;
  const std::string cmd = std::string(kPython) + " -c 'import safetensors, numpy' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

void expect_described(const nlohmann::json& d, const torch::Tensor& t, const std::string& dtype,
                      const std::string& name) {
  SCOPED_TRACE(name);
  EXPECT_EQ(d.at("dtype").get<std::string>(), dtype);
  EXPECT_EQ(d.at("shape").get<std::vector<int64_t>>(), t.sizes().vec());
  EXPECT_EQ(d.at("hex").get<std::string>(), hex_of(tensor_bytes_of(t)));
}

TEST(SafetensorsPython, CrossChecksWithTheReferenceImplementation) {
  if (!reference_available())
    GTEST_SKIP() << kPython << " or its safetensors package is missing (run scripts/setup.sh)";
  TempDir dir;
  const std::vector<std::pair<std::string, torch::Tensor>> ours = {
      {"f32", random_bytes_tensor(torch::kFloat32, {4, 3}, 11)},
      {"f16", random_bytes_tensor(torch::kFloat16, {5}, 12)},
      {"bf16", random_bytes_tensor(torch::kBFloat16, {2, 2, 3}, 13)},
      {"i64", random_bytes_tensor(torch::kInt64, {3}, 14)},
      {"f32.scalar", random_bytes_tensor(torch::kFloat32, {}, 15)},
      {"bf16.scalar", random_bytes_tensor(torch::kBFloat16, {}, 16)},
      {"i64.empty", random_bytes_tensor(torch::kInt64, {2, 0}, 17)},
  };
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"writer", "polar"}};
  save_safetensors(dir.file("from_polar.safetensors"), ours, meta);
  write_file_bytes(dir.file("check.py"), kScript);
  const std::string cmd = std::string(kPython) + " " + dir.file("check.py") + " " +
                          dir.path.string() + " > " + dir.file("python.log") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file_bytes(dir.file("python.log"));

  const std::map<std::string, std::string> dtype_of = {
      {"f32", "F32"}, {"f16", "F16"}, {"bf16", "BF16"}, {"i64", "I64"}};
  auto dtype_name = [&](const std::string& name) {
    return dtype_of.at(name.substr(0, name.find('.')));
  };

  // polar -> Python
  const nlohmann::json read =
      nlohmann::json::parse(read_file_bytes(dir.file("read_by_python.json")));
  EXPECT_EQ(read.at("metadata").get<StringMap>(), meta);
  ASSERT_EQ(read.at("tensors").size(), ours.size());
  for (const auto& [name, t] : ours)
    expect_described(read.at("tensors").at(name), t, dtype_name(name), name);

  // Python -> polar
  const nlohmann::json written =
      nlohmann::json::parse(read_file_bytes(dir.file("written_by_python.json")));
  const SafetensorsFile f = SafetensorsFile::open(dir.file("from_python.safetensors"));
  EXPECT_EQ(f.metadata(), written.at("metadata").get<StringMap>());
  ASSERT_EQ(f.tensors().size(), written.at("tensors").size());
  for (const auto& [name, d] : written.at("tensors").items()) {
    const torch::Tensor t = f.tensor(name);
    EXPECT_EQ(f.info(name).dtype, d.at("dtype").get<std::string>());
    expect_described(d, t, dtype_name(name), name);
  }
}

}  // namespace
}  // namespace polar::io
