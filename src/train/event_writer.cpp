#include "polar/train/event_writer.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "polar/common/error.h"

namespace fs = std::filesystem;

namespace polar {

namespace {

constexpr const char* kFilePrefix = "events.out.tfevents.";
// The version TensorBoard needs to honour SessionLog START (older files purge by tag heuristics).
constexpr const char* kFileVersion = "brain.Event:2";

// Byte-at-a-time table for the reflected Castagnoli polynomial 0x82f63b78 (Debian 12 packages
// no CRC-32C library; a few dozen bytes per step need no hardware path).
const std::array<uint32_t, 256>& crc32c_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  std::array<char, 256> buf{};
  if (gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string name(buf.data());
  for (char& ch : name)
    if (ch == '/') ch = '_';
  return name;
}

// The protocol-buffer wire format of the few TensorFlow messages written, with the field numbers
// of tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto (mirrored in
// the tensorboard package's tensorboard/compat/proto/):
//   Event      { double wall_time = 1; int64 step = 2; oneof what { string file_version = 3;
//                Summary summary = 5; SessionLog session_log = 7; } }
//   Summary    { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
//   SessionLog { SessionStatus status = 1; }   (START = 1)
// Encoded by hand: Debian's libsentencepiece exports the symbols of the protobuf 3.14 it bundles,
// which clash with libprotobuf's in one process (sentencepiece's version check then fails).
class ProtoWriter {
 public:
  void varint(int field, uint64_t v) {
    key(field, 0);
    put_varint(v);
  }
  void fixed64(int field, double v) {
    key(field, 1);
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>(bits >> (8 * i)));
  }
  void fixed32(int field, float v) {
    key(field, 5);
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>(bits >> (8 * i)));
  }
  void bytes(int field, const std::string& b) {  // strings and embedded messages
    key(field, 2);
    put_varint(b.size());
    out_ += b;
  }
  const std::string& str() const { return out_; }

 private:
  void key(int field, int wire_type) { put_varint(static_cast<uint64_t>(field) << 3 | wire_type); }
  void put_varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
    out_.push_back(static_cast<char>(v));
  }
  std::string out_;
};

// An Event's header: wall_time and (when non-zero, as proto3 writes it) step.
ProtoWriter event_header(int64_t step) {
  ProtoWriter e;
  e.fixed64(1, wall_seconds());
  if (step != 0) e.varint(2, static_cast<uint64_t>(step));
  return e;
}

// A Summary.Value with a simple_value.
std::string scalar_value(const std::string& tag, double value) {
  ProtoWriter v;
  v.bytes(1, tag);
  v.fixed32(2, static_cast<float>(value));
  return v.str();
}

// The largest <time> among `dir`'s event files (-1 when none): a new file takes a later one, so
// every reader, which reads a directory's files in name order, reads the newest last.
int64_t latest_event_file_time(const fs::path& dir) {
  int64_t latest = -1;
  const std::string prefix = kFilePrefix;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    size_t end = prefix.size();
    while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
    if (end == prefix.size() || end - prefix.size() > 15) continue;
    latest = std::max<int64_t>(latest, std::stoll(name.substr(prefix.size(), end - prefix.size())));
  }
  return latest;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto& table = crc32c_table();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string metrics_scalar_tag(const std::string& key) {
  if (key.rfind("eval_", 0) == 0) return "eval/" + key.substr(5);
  return "train/" + key;
}

struct EventWriter::Impl {
  std::string path;
  std::FILE* file = nullptr;
  double flush_secs = 0;
  std::chrono::steady_clock::time_point last_flush = std::chrono::steady_clock::now();
  bool failed = false;  // a write failed: warned once, then records are dropped

  void write(const std::string& data) {  // one serialized Event
    if (failed) return;
    std::array<unsigned char, 8> len{};
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(data.size() >> (8 * i));
    auto put_u32 = [&](uint32_t v) {
      std::array<unsigned char, 4> b{};
      for (int i = 0; i < 4; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
      return std::fwrite(b.data(), 1, 4, file) == 4;
    };
    bool ok = std::fwrite(len.data(), 1, len.size(), file) == len.size() &&
              put_u32(masked_crc32c(len.data(), len.size())) &&
              std::fwrite(data.data(), 1, data.size(), file) == data.size() &&
              put_u32(masked_crc32c(data.data(), data.size()));
    const auto now = std::chrono::steady_clock::now();
    if (ok && (flush_secs <= 0 ||
               std::chrono::duration<double>(now - last_flush).count() >= flush_secs)) {
      ok = std::fflush(file) == 0;
      last_flush = now;
    }
    if (!ok) {
      failed = true;
      spdlog::warn("tensorboard: writing {} failed; no more curves are written this run", path);
    }
  }
};

EventWriter::EventWriter(const std::string& dir, int64_t first_step, double flush_secs)
    : impl_(std::make_unique<Impl>()) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  POLAR_CHECK(!ec, "tensorboard: cannot create ", dir, ": ", ec.message());
  const int64_t now = static_cast<int64_t>(wall_seconds());
  const int64_t time = std::max(now, latest_event_file_time(dir) + 1);
  impl_->path = (fs::path(dir) / (kFilePrefix + std::to_string(time) + "." + host_name())).string();
  impl_->flush_secs = flush_secs;
  impl_->file = std::fopen(impl_->path.c_str(), "wbx");  // x: never reuse an existing file
  POLAR_CHECK(impl_->file != nullptr, "tensorboard: cannot create ", impl_->path, ": ",
              std::strerror(errno));

  ProtoWriter version = event_header(0);
  version.bytes(3, kFileVersion);
  impl_->write(version.str());
  ProtoWriter session_log;
  session_log.varint(1, 1);  // status: START
  ProtoWriter start = event_header(first_step);
  start.bytes(7, session_log.str());
  impl_->write(start.str());
  flush();
}

EventWriter::~EventWriter() {
  if (impl_ && impl_->file) std::fclose(impl_->file);
}

void EventWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  ProtoWriter summary;
  summary.bytes(1, scalar_value(tag, value));
  ProtoWriter event = event_header(step);
  event.bytes(5, summary.str());
  impl_->write(event.str());
}

void EventWriter::add_metrics(const nlohmann::json& record) {
  POLAR_CHECK(record.is_object() && record.contains("step") && record["step"].is_number_integer(),
              "tensorboard: a metrics record needs an integer \"step\"");
  // One Event per record (all its scalars), as TensorFlow's summary writers batch a step.
  ProtoWriter summary;
  for (const auto& [key, value] : record.items())
    if (key != "step" && value.is_number())
      summary.bytes(1, scalar_value(metrics_scalar_tag(key), value.get<double>()));
  ProtoWriter event = event_header(record["step"].get<int64_t>());
  event.bytes(5, summary.str());
  impl_->write(event.str());
}

void EventWriter::flush() {
  if (!impl_->failed && std::fflush(impl_->file) != 0) {
    impl_->failed = true;
    spdlog::warn("tensorboard: writing {} failed; no more curves are written this run",
                 impl_->path);
  }
  impl_->last_flush = std::chrono::steady_clock::now();
}

const std::string& EventWriter::path() const { return impl_->path; }

}  // namespace polar
