#include "polar/checkpoint/verify.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <zlib.h>

#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <vector>

#include "polar/common/error.h"
#include "polar/common/json_config.h"

namespace fs = std::filesystem;

namespace polar {

using nlohmann::json;

namespace {

constexpr const char* kChecksumsFormat = "polar-checksums-v1";

bool is_tensor_file(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".safetensors" || ext == ".pt" || ext == ".bin";
}

struct FileDigest {
  uint64_t bytes = 0;
  uint32_t crc = 0;
};

FileDigest digest(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  POLAR_CHECK(in.good(), path.string(), ": cannot open file");
  FileDigest d;
  uLong crc = crc32(0L, Z_NULL, 0);
  std::vector<char> buf(size_t{1} << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<uInt>(in.gcount());
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), n);
    d.bytes += n;
  }
  POLAR_CHECK(!in.bad(), path.string(), ": read error");
  d.crc = static_cast<uint32_t>(crc);
  return d;
}

std::string hex(uint32_t v) { return fmt::format("{:08x}", v); }

// The PID in "NAME.tmp-PID", "NAME.old-PID" or "NAME.tmp.PID", or -1.
pid_t temporary_owner(const std::string& name) {
  for (const char* marker : {".tmp-", ".old-", ".tmp."}) {
    const size_t at = name.rfind(marker);
    if (at == std::string::npos || at == 0) continue;
    const std::string digits = name.substr(at + 5);
    if (digits.empty() || digits.size() > 9 ||
        !std::all_of(digits.begin(), digits.end(), ::isdigit))
      continue;
    return static_cast<pid_t>(std::stol(digits));
  }
  return -1;
}

bool process_alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

}  // namespace

void write_checkpoint_checksums(const std::string& dir) {
  json files = json::object();
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file() || !is_tensor_file(e.path())) continue;
    const FileDigest d = digest(e.path());
    files[e.path().filename().string()] = {{"bytes", d.bytes}, {"crc32", hex(d.crc)}};
  }
  json doc = {{"format", kChecksumsFormat}, {"algorithm", "crc32"}, {"files", files}};
  write_json_file_atomic((fs::path(dir) / kChecksumsFile).string(), doc);
}

void verify_checkpoint_checksums(const std::string& dir) {
  const fs::path list = fs::path(dir) / kChecksumsFile;
  if (!fs::exists(list)) {
    spdlog::warn("{}: no {}; the tensor files cannot be checked for corruption", dir,
                 kChecksumsFile);
    return;
  }
  const json doc = read_json_file(list.string());
  const bool known = doc.is_object() && doc.contains("format") && doc["format"].is_string() &&
                     doc["format"].get<std::string>() == kChecksumsFormat;
  POLAR_CHECK(known && doc.contains("files") && doc["files"].is_object(), list.string(),
              ": expected {\"format\": \"", kChecksumsFormat, "\", \"files\": {...}}");
  for (const auto& [name, entry] : doc["files"].items()) {
    const std::string where = list.string() + ": files." + name;
    POLAR_CHECK(name.find('/') == std::string::npos && name != ".." && name != ".", where,
                ": not a file name");
    POLAR_CHECK(entry.is_object() && entry.contains("bytes") &&
                    entry["bytes"].is_number_unsigned() && entry.contains("crc32") &&
                    entry["crc32"].is_string(),
                where, ": expected {\"bytes\": N, \"crc32\": \"hex\"}");
    const fs::path file = fs::path(dir) / name;
    POLAR_CHECK(fs::is_regular_file(file), file.string(), ": missing (listed in ", kChecksumsFile,
                ")");
    const FileDigest d = digest(file);
    const auto bytes = entry["bytes"].get<uint64_t>();
    POLAR_CHECK(d.bytes == bytes, file.string(), ": ", d.bytes, " bytes, but ", bytes,
                " were written; the file is truncated or corrupt (--no-verify skips this check)");
    POLAR_CHECK(hex(d.crc) == entry["crc32"].get<std::string>(), file.string(), ": CRC-32 ",
                hex(d.crc), " differs from the ", entry["crc32"].get<std::string>(),
                " written at save; the file is corrupt (--no-verify skips this check)");
  }
}

void check_weights_finite(RewardModel& model, const std::string& where) {
  torch::NoGradGuard no_grad;
  for (const auto& p : model->named_parameters()) {
    const auto finite = torch::isfinite(p.value());
    if (finite.all().item<bool>()) continue;
    const int64_t bad = finite.numel() - finite.sum().item<int64_t>();
    throw Error(fmt::format(
        "{}: tensor \"{}\" holds {} non-finite values (NaN or infinity); the weights are "
        "unusable (--no-verify skips this check)",
        where, p.key(), bad));
  }
}

int64_t remove_stale_temporaries(const std::string& run_dir) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) return 0;
  int64_t removed = 0;
  for (const auto& e : fs::directory_iterator(run_dir, ec)) {
    const std::string name = e.path().filename().string();
    const pid_t owner = temporary_owner(name);
    // NAME.staging is shared by every rank of one save and renamed when it completes; between
    // saves (where this runs) one is always left by a save that was killed.
    const bool staging = name.size() > 8 && name.compare(name.size() - 8, 8, ".staging") == 0;
    if (!staging && (owner <= 0 || owner == ::getpid() || process_alive(owner))) continue;
    std::error_code rm;
    fs::remove_all(e.path(), rm);
    if (rm) {
      spdlog::warn("{}: cannot remove the stale temporary: {}", e.path().string(), rm.message());
      continue;
    }
    if (staging) {
      spdlog::info("removed {} (left by a save that did not complete)", e.path().string());
    } else {
      spdlog::info("removed {} (left by process {}, which no longer runs)", e.path().string(),
                   owner);
    }
    ++removed;
  }
  return removed;
}

}  // namespace polar
