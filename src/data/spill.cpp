// Spill files: buffered appends in pass 1, one whole-file load and sort per partition in pass 2.
#include "spill.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "polar/common/error.h"

namespace polar::data_build {

namespace {

constexpr unsigned __int128 kHashSpace = static_cast<unsigned __int128>(1) << 64;
constexpr size_t kRecordHeader = 8 + 4 * 4;

template <typename T>
T read_at(const std::string& s, size_t offset) {
  T v;
  std::memcpy(&v, s.data() + offset, sizeof(T));
  return v;
}

}  // namespace

HashRange::HashRange(int worker_index, int num_workers, int64_t partitions)
    : partitions_(partitions) {
  POLAR_CHECK(num_workers >= 1 && worker_index >= 0 && worker_index < num_workers,
              "--worker-index ", worker_index, " must be in [0, --num-workers ", num_workers, ")");
  POLAR_CHECK(partitions >= 1, "partitions must be >= 1, got ", partitions);
  lo_ = kHashSpace * static_cast<unsigned>(worker_index) / static_cast<unsigned>(num_workers);
  width_ =
      kHashSpace * static_cast<unsigned>(worker_index + 1) / static_cast<unsigned>(num_workers) -
      lo_;
}

bool HashRange::contains(uint64_t hash) const { return hash >= lo_ && hash - lo_ < width_; }

int64_t HashRange::partition(uint64_t hash) const {
  return static_cast<int64_t>((hash - lo_) * static_cast<unsigned __int128>(partitions_) / width_);
}

SpillWriter::SpillWriter(const std::string& dir, int64_t partitions, size_t buffer_bytes)
    : dir_(dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  POLAR_CHECK(!ec, dir, ": cannot create the spill directory: ", ec.message());
  files_.assign(static_cast<size_t>(partitions), nullptr);
  buffers_.resize(static_cast<size_t>(partitions));
  for (int64_t p = 0; p < partitions; ++p) {
    const std::string file = path(p);
    std::FILE* f = std::fopen(file.c_str(), "wb");
    POLAR_CHECK(f != nullptr, file, ": cannot create spill file: ", std::strerror(errno));
    files_[static_cast<size_t>(p)] = f;
    buffers_[static_cast<size_t>(p)].resize(buffer_bytes);
    std::setvbuf(f, buffers_[static_cast<size_t>(p)].data(), _IOFBF, buffer_bytes);
  }
}

SpillWriter::~SpillWriter() {
  for (std::FILE* f : files_) {
    if (f) std::fclose(f);
  }
}

std::string spill_file(const std::string& dir, int64_t partition) {
  char name[32];
  std::snprintf(name, sizeof(name), "/part-%05lld.spill", static_cast<long long>(partition));
  return dir + name;
}

void SpillWriter::add(int64_t partition, uint64_t hash, const TrajectoryRecord& r) {
  std::FILE* f = files_[static_cast<size_t>(partition)];
  const std::string* fields[4] = {&r.prompt, &r.policy, &r.response, &r.category};
  char header[kRecordHeader];
  std::memcpy(header, &hash, 8);
  size_t total = kRecordHeader;
  for (int i = 0; i < 4; ++i) {
    POLAR_CHECK(fields[i]->size() <= std::numeric_limits<uint32_t>::max(),
                "a text field is longer than 4 GiB");
    const auto len = static_cast<uint32_t>(fields[i]->size());
    std::memcpy(header + 8 + 4 * i, &len, 4);
    total += len;
  }
  bool ok = std::fwrite(header, 1, kRecordHeader, f) == kRecordHeader;
  for (int i = 0; i < 4 && ok; ++i)
    ok = std::fwrite(fields[i]->data(), 1, fields[i]->size(), f) == fields[i]->size();
  POLAR_CHECK(ok, path(partition), ": write failed: ", std::strerror(errno));
  bytes_ += static_cast<int64_t>(total);
}

void SpillWriter::close() {
  for (size_t p = 0; p < files_.size(); ++p) {
    const int rc = std::fclose(files_[p]);
    files_[p] = nullptr;
    POLAR_CHECK(rc == 0, path(static_cast<int64_t>(p)), ": write failed: ", std::strerror(errno));
  }
}

std::vector<SpilledRecord> load_spill(const std::string& path, std::string& storage) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  POLAR_CHECK(in.good(), path, ": cannot open spill file");
  storage.resize(static_cast<size_t>(in.tellg()));
  in.seekg(0);
  in.read(storage.data(), static_cast<std::streamsize>(storage.size()));
  POLAR_CHECK(in.good() || storage.empty(), path, ": read error");
  std::vector<SpilledRecord> records;
  size_t at = 0;
  while (at < storage.size()) {
    POLAR_CHECK(storage.size() - at >= kRecordHeader, path, ": damaged spill file");
    SpilledRecord r;
    r.hash = read_at<uint64_t>(storage, at);
    std::string_view* fields[4] = {&r.prompt, &r.policy, &r.response, &r.category};
    size_t cursor = at + kRecordHeader;
    for (int i = 0; i < 4; ++i) {
      const uint32_t len = read_at<uint32_t>(storage, at + 8 + 4 * static_cast<size_t>(i));
      POLAR_CHECK(storage.size() - cursor >= len, path, ": damaged spill file");
      *fields[i] = std::string_view(storage.data() + cursor, len);
      cursor += len;
    }
    records.push_back(r);
    at = cursor;
  }
  std::sort(records.begin(), records.end(), [](const SpilledRecord& a, const SpilledRecord& b) {
    return a.hash != b.hash ? a.hash < b.hash : a.prompt < b.prompt;
  });
  return records;
}

}  // namespace polar::data_build
