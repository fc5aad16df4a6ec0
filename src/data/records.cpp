// JSONL readers for trajectories, preference triples and scoring requests. Every line is
// untrusted: bytes are checked for UTF-8 before parsing, each field for presence and type.
#include "polar/data/records.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "polar/common/error.h"

namespace polar {

using nlohmann::json;

namespace {

// Reasons, as counted in ReadStats::skipped_by_reason and written to manifests.
constexpr const char* kInvalidJson = "invalid_json";
constexpr const char* kInvalidUtf8 = "invalid_utf8";
constexpr const char* kMissingField = "missing_field";
constexpr const char* kWrongType = "wrong_type";
constexpr const char* kEmptyText = "empty_text";
constexpr const char* kBadMessages = "bad_messages";

// The roles of a chat message (OpenAI / Hugging Face chat templates).
bool is_known_role(const std::string& role) {
  return role == "system" || role == "user" || role == "assistant" || role == "tool";
}

struct LineError {
  const char* reason;
  std::string message;
};

// `label` names the field in messages: "\"prompt\"" for a record key, or the caller's `where`.
std::string render(const json& value, const std::string& label) {
  if (value.is_string()) {
    const auto& s = value.get_ref<const std::string&>();
    if (s.empty()) throw LineError{kEmptyText, label + ": empty text"};
    return s;
  }
  if (!value.is_array()) {
    throw LineError{kWrongType, label + ": expected a string or a messages list, got " +
                                    std::string(value.type_name())};
  }
  if (value.empty()) throw LineError{kEmptyText, label + ": empty messages list"};
  std::string text;
  for (size_t i = 0; i < value.size(); ++i) {
    const json& item = value[i];
    const std::string where = label + "[" + std::to_string(i) + "]";
    if (!item.is_object()) {
      throw LineError{kBadMessages,
                      where + ": expected a message object with a string \"content\", got " +
                          std::string(item.type_name())};
    }
    auto role = item.find("role");  // optional; when given, one of the chat roles
    if (role != item.end() &&
        (!role->is_string() || !is_known_role(role->get_ref<const std::string&>()))) {
      throw LineError{
          kBadMessages,
          where + ".role: expected one of system, user, assistant, tool, got " + role->dump()};
    }
    auto content = item.find("content");
    if (content == item.end())
      throw LineError{kBadMessages, where + ": message has no \"content\""};
    if (!content->is_string()) {
      throw LineError{kBadMessages, where + ".content: expected a string, got " +
                                        std::string(content->type_name())};
    }
    if (i > 0) text += '\n';
    text += content->get_ref<const std::string&>();
  }
  if (text.empty()) throw LineError{kEmptyText, label + ": messages have no text"};
  return text;
}

const json& require(const json& obj, const char* key, const char* expected) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    throw LineError{kMissingField,
                    std::string("missing field \"") + key + "\" (expected " + expected + ")"};
  }
  return *it;
}

std::string text_field(const json& obj, const char* key) {
  return render(require(obj, key, "a string or a messages list"), std::string("\"") + key + "\"");
}

std::string name_field(const json& obj, const char* key) {
  const json& v = require(obj, key, "a string");
  if (!v.is_string()) {
    throw LineError{kWrongType,
                    std::string("\"") + key + "\": expected a string, got " + v.type_name()};
  }
  if (v.get_ref<const std::string&>().empty())
    throw LineError{kEmptyText, std::string("\"") + key + "\": empty"};
  return v.get<std::string>();
}

std::string category_field(const json& obj) {
  auto it = obj.find("category");
  if (it == obj.end()) return "default";
  if (!it->is_string()) {
    throw LineError{kWrongType,
                    std::string("\"category\": expected a string, got ") + it->type_name()};
  }
  return it->get_ref<const std::string&>().empty() ? "default" : it->get<std::string>();
}

// One line: blank, a record, or invalid with the reason and message of the LineError.
template <typename Record, typename Parse>
LineParse parse_line(std::string& line, Parse parse, Record& out, std::string& reason,
                     std::string& message) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.find_first_not_of(" \t\f\v") == std::string::npos) return LineParse::Blank;
  try {
    size_t bad = 0;
    if (!is_valid_utf8(line, &bad)) {
      throw LineError{kInvalidUtf8, "invalid UTF-8 at byte " + std::to_string(bad + 1)};
    }
    json obj;
    try {
      obj = json::parse(line);
    } catch (const json::exception& e) {  // syntax, or a number out of range (1e999)
      throw LineError{kInvalidJson, std::string("invalid JSON: ") + e.what()};
    }
    if (!obj.is_object()) {
      throw LineError{kWrongType, std::string("expected a JSON object, got ") + obj.type_name()};
    }
    out = parse(obj);
    return LineParse::Record;
  } catch (const LineError& e) {
    reason = e.reason;
    message = e.message;
    return LineParse::Invalid;
  }
}

template <typename Record, typename Parse>
std::vector<Record> read_jsonl(const std::string& path, bool skip_invalid, ReadStats* stats,
                               Parse parse) {
  std::ifstream in(path, std::ios::binary);
  POLAR_CHECK(in.good(), path, ": cannot open file");
  ReadStats local;
  ReadStats& st = stats ? *stats : local;
  std::vector<Record> records;
  std::string line, reason, message;
  int64_t line_no = 0;
  int64_t nonblank = 0;
  const int64_t skipped_before = st.skipped;
  while (std::getline(in, line)) {
    ++line_no;
    Record r;
    const LineParse result = parse_line(line, parse, r, reason, message);
    if (result == LineParse::Blank) continue;
    ++st.lines;
    ++nonblank;
    if (result == LineParse::Invalid) {
      st.add_invalid(path + ":" + std::to_string(line_no) + ": " + message, reason, skip_invalid);
      continue;
    }
    r.line = line_no;
    records.push_back(std::move(r));
    ++st.accepted;
  }
  POLAR_CHECK(!in.bad(), path, ": read error");
  POLAR_CHECK(nonblank > 0, path, ": empty file (expected one JSON object per line)");
  if (st.skipped - skipped_before > 3)
    spdlog::warn("{}: skipped {} invalid lines in all", path, st.skipped - skipped_before);
  return records;
}

TrajectoryRecord parse_trajectory(const json& obj) {
  TrajectoryRecord r;
  r.prompt = text_field(obj, "prompt");
  r.policy = name_field(obj, "policy");
  r.category = category_field(obj);
  for (auto [key, field] :
       {std::pair<const char*, std::string*>{"finish", &r.finish}, {"dropped", &r.dropped}}) {
    auto it = obj.find(key);
    if (it != obj.end() && it->is_string()) *field = it->get<std::string>();
  }
  // A response `polar sample` dropped is only counted: it may be empty.
  if (r.dropped.empty()) r.response = text_field(obj, "response");
  return r;
}

}  // namespace

void ReadStats::add_invalid(const std::string& message, const std::string& reason,
                            bool skip_invalid) {
  if (!skip_invalid) throw Error(message);
  if (skipped++ < 3) spdlog::warn("skipping {}", message);
  ++skipped_by_reason[reason];
}

LineParse parse_trajectory_line(std::string& line, TrajectoryRecord& record, std::string& reason,
                                std::string& message) {
  return parse_line(line, parse_trajectory, record, reason, message);
}

json ReadStats::to_json() const {
  return {{"lines", lines},
          {"accepted", accepted},
          {"skipped", skipped},
          {"skipped_by_reason", skipped_by_reason}};
}

std::string render_text_field(const json& value, const std::string& where) {
  try {
    return render(value, where);
  } catch (const LineError& e) {
    throw Error(e.message);
  }
}

std::vector<TrajectoryRecord> read_trajectories(const std::string& path, bool skip_invalid,
                                                ReadStats* stats) {
  return read_jsonl<TrajectoryRecord>(path, skip_invalid, stats, parse_trajectory);
}

std::vector<PreferenceRecord> read_preferences(const std::string& path, bool skip_invalid,
                                               ReadStats* stats) {
  return read_jsonl<PreferenceRecord>(path, skip_invalid, stats, [](const json& obj) {
    PreferenceRecord r;
    r.prompt = text_field(obj, "prompt");
    r.reference = text_field(obj, "reference");
    r.chosen = text_field(obj, "chosen");
    r.rejected = text_field(obj, "rejected");
    r.category = category_field(obj);
    return r;
  });
}

std::vector<ScoringRecord> read_scoring(const std::string& path, bool skip_invalid,
                                        ReadStats* stats) {
  return read_jsonl<ScoringRecord>(path, skip_invalid, stats, [](const json& obj) {
    ScoringRecord r;
    r.prompt = text_field(obj, "prompt");
    r.reference = text_field(obj, "reference");
    r.output = text_field(obj, "output");
    return r;
  });
}

}  // namespace polar
