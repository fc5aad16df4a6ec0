// TensorBoard event files (the `tensorboard` package reads them; no TensorFlow needed): a run
// directory's `tensorboard/` holds one `events.out.tfevents.<time>.<host>` per start of the run.
// Each file begins with a restart marker (SessionLog START at the first step it will log), so
// TensorBoard drops what earlier files logged from that step on: a resumed run shows every step
// once. Records are TFRecord-framed (length, masked CRC-32C of the length, the serialized Event,
// masked CRC-32C of the data).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace polar {

class EventWriter {
 public:
  // Creates `dir` and a new event file there, named to sort after every event file already in
  // it, and marks a (re)start at `first_step`. `flush_secs` 0: every record reaches the file at
  // once; otherwise at most this many seconds late (and at close).
  EventWriter(const std::string& dir, int64_t first_step, double flush_secs);
  ~EventWriter();  // flushes
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void add_scalar(const std::string& tag, double value, int64_t step);
  // Every number of a metrics.jsonl record (not "step", which is the step; not booleans or
  // strings) as a scalar at record["step"], tagged by metrics_scalar_tag.
  void add_metrics(const nlohmann::json& record);
  void flush();
  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The TensorBoard tag of a metrics.jsonl key: "eval_<x>" -> "eval/<x>", any other -> "train/<key>".
std::string metrics_scalar_tag(const std::string& key);

// CRC-32C (Castagnoli, as TFRecord framing uses), continuing from `crc` (0 to start).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
// TFRecord's masked form: rotate right by 15 bits, add 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t n);

}  // namespace polar
