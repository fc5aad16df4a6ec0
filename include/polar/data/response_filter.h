// The response filter of sampled trajectories, shared by `polar sample` (before a record is
// written) and `polar data pretrain` (on every record read), as POLAR cleans its pre-training
// trajectories:
//   aborted:    finish "abort" / "error" / "cancelled" (the server gave up) -> dropped
//   loop:       the text ends in a repeated unit (at least min_loop_repeats copies of a 1..
//               max_loop_period byte unit, spanning at least min_loop_bytes) -> cut after the
//               unit's first copy
//   unfinished: finish "length" (cut by max_new_tokens) -> cut back to the last sentence end
//               (. ! ? and their full-width forms, or a line break), or dropped when it has none
//   empty:      nothing left (or nothing but white space) -> dropped
// Every rule that fires is counted, so a summary or a manifest can say what the filter did.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

namespace polar {

struct ResponseFilterOptions {
  bool enabled = true;
  int64_t max_loop_period = 512;  // bytes of the longest repeated unit looked for
  int64_t min_loop_repeats = 4;   // copies of the unit (the last one may be partial)
  int64_t min_loop_bytes = 64;    // bytes the repetition must span
  bool drop_unfinished = false;   // true: drop length-cut responses instead of cutting them back
};

struct ResponseFilterCounts {
  int64_t seen = 0, kept = 0;
  int64_t aborted_dropped = 0;
  int64_t loop_truncated = 0;
  int64_t unfinished_cut = 0;      // cut back to the last sentence end
  int64_t unfinished_dropped = 0;  // no sentence end to cut back to (or drop_unfinished)
  int64_t empty_dropped = 0;
  void add(const ResponseFilterCounts& other);
  // A record that `polar sample` already dropped by `rule` ("aborted", "unfinished", "empty").
  void add_dropped(const std::string& rule);
  nlohmann::json to_json() const;
};

struct FilteredResponse {
  bool keep = true;
  std::string text;     // the response as kept
  std::string dropped;  // the rule that dropped it ("aborted", "unfinished", "empty") or ""
  bool loop_truncated = false, unfinished_cut = false;
};

// Applies the rules in the order above and counts them in `counts`.
FilteredResponse filter_response(const std::string& text, const std::string& finish,
                                 const ResponseFilterOptions& options,
                                 ResponseFilterCounts& counts);

// Where the text's tail loop starts to repeat (the end of the unit's first copy), or npos when
// the tail is no loop by `options`. Exposed for tests.
size_t loop_cut(const std::string& text, const ResponseFilterOptions& options);

}  // namespace polar
