// Hugging Face import (placeholder until the interop module lands: detection works, import refuses).
#include "polar/io/hf.h"

#include <filesystem>

#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/train/checkpoint.h"

namespace polar::io {

bool is_hf_directory(const std::string& dir) {
  auto cfg = std::filesystem::path(dir) / "config.json";
  if (!std::filesystem::is_regular_file(cfg)) return false;
  auto j = read_json_file(cfg.string());
  return j.is_object() && j.contains("architectures");
}

LoadedModel import_hf(const std::string& dir, const torch::Device& device) {
  throw Error(dir + ": importing Hugging Face checkpoints is not supported by this build");
}

}  // namespace polar::io
