// Readers for the three JSONL inputs. Each text field is a string or a messages list
// ([{"role":..., "content":...}], rendered by joining contents with "\n"; a role, when given, is
// system, user, assistant or tool). An empty file is an error. Bad lines (bad JSON,
// missing or mistyped field, empty text, invalid UTF-8) throw polar::Error("FILE:LINE: ...")
// unless skip_invalid is set, in which case they are counted in ReadStats by reason. Blank lines
// are ignored; extra keys are allowed. The readers add to *stats (it may be null), so one
// ReadStats can sum several files.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "polar/common/utf8.h"

namespace polar {

struct TrajectoryRecord {  // {"prompt","policy","response"[,"category","finish","dropped"]}
  std::string prompt, policy, response, category;
  std::string finish;   // `polar sample`'s finish reason ("" when absent)
  std::string dropped;  // the response-filter rule that dropped it in `polar sample` ("" = kept)
  int64_t line = 0;
};

struct PreferenceRecord {  // {"prompt","reference","chosen","rejected"[,"category"]}
  std::string prompt, reference, chosen, rejected, category;
  int64_t line = 0;
};

struct ScoringRecord {  // {"prompt","reference","output"}
  std::string prompt, reference, output;
  int64_t line = 0;
};

struct ReadStats {
  int64_t lines = 0;  // non-blank lines seen
  int64_t accepted = 0;
  int64_t skipped = 0;
  std::map<std::string, int64_t> skipped_by_reason;
  nlohmann::json to_json() const;
  // A bad line: throws polar::Error(message) unless skip_invalid, else counts it under `reason`
  // (and logs the first few).
  void add_invalid(const std::string& message, const std::string& reason, bool skip_invalid);
};

std::vector<TrajectoryRecord> read_trajectories(const std::string& path, bool skip_invalid,
                                                ReadStats* stats);
std::vector<PreferenceRecord> read_preferences(const std::string& path, bool skip_invalid,
                                               ReadStats* stats);
std::vector<ScoringRecord> read_scoring(const std::string& path, bool skip_invalid,
                                        ReadStats* stats);

// One line of a trajectories file, checked as read_trajectories checks it (a trailing "\r" is
// removed). Invalid: `reason` is the skipped_by_reason key, `message` says what is wrong (the
// caller prefixes FILE:LINE). Lets streaming readers parse lines on several threads.
enum class LineParse { Blank, Record, Invalid };
LineParse parse_trajectory_line(std::string& line, TrajectoryRecord& record, std::string& reason,
                                std::string& message);

// A text field: a string, or a messages list joined with "\n". Throws polar::Error(where + ...).
std::string render_text_field(const nlohmann::json& value, const std::string& where);

}  // namespace polar
