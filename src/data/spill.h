// Spill files of the out-of-core pre-training builder: pass 1 appends each record to the file of
// its partition (a sub-range of the prompt-hash space); pass 2 loads one file at a time.
// Record layout: u64 prompt hash, 4 x u32 lengths (prompt, policy, response, category), bytes.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "polar/data/records.h"

namespace polar::data_build {

// The part of the 64-bit hash space a worker owns, cut into `partitions` equal sub-ranges;
// partition p holds smaller hashes than partition p + 1, so the partitions in order, each sorted
// by hash, give one global hash order whatever their number.
class HashRange {
 public:
  HashRange(int worker_index, int num_workers, int64_t partitions);
  bool contains(uint64_t hash) const;
  int64_t partition(uint64_t hash) const;  // requires contains(hash)
  int64_t partitions() const { return partitions_; }

 private:
  unsigned __int128 lo_ = 0, width_ = 0;
  int64_t partitions_;
};

// DIR/part-NNNNN.spill
std::string spill_file(const std::string& dir, int64_t partition);

class SpillWriter {
 public:
  // Creates DIR and DIR/part-NNNNN.spill for every partition; `buffer_bytes` of write buffer per
  // file.
  SpillWriter(const std::string& dir, int64_t partitions, size_t buffer_bytes);
  ~SpillWriter();
  SpillWriter(const SpillWriter&) = delete;
  SpillWriter& operator=(const SpillWriter&) = delete;
  void add(int64_t partition, uint64_t hash, const TrajectoryRecord& record);
  void close();  // flushes and closes every file; throws on a write error (e.g. a full disk)
  std::string path(int64_t partition) const { return spill_file(dir_, partition); }
  int64_t bytes_written() const { return bytes_; }

 private:
  std::string dir_;
  std::vector<std::FILE*> files_;
  std::vector<std::vector<char>> buffers_;
  int64_t bytes_ = 0;
};

struct SpilledRecord {
  uint64_t hash = 0;
  std::string_view prompt, policy, response, category;
};

// Reads a whole spill file into `storage` and returns views of its records, sorted by
// (hash, prompt); throws on a damaged file.
std::vector<SpilledRecord> load_spill(const std::string& path, std::string& storage);

}  // namespace polar::data_build
