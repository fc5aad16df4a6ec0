#include "polar/common/config_schema.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "polar/common/config_visitors.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"

namespace polar {

using nlohmann::json;

namespace {

// A bound as a person writes it: "1e+15", "0.1", and integers such as 16777216 in full (the
// 6-digit default would round them).
std::string format_bound(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream os;
  os << v;
  if (std::stod(os.str()) == v) return os.str();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

}  // namespace

bool Range::contains(double v) const {
  if (!std::isfinite(v)) return false;
  bool lo_ok = lo_open ? v > lo : v >= lo;
  bool hi_ok = hi_open ? v < hi : v <= hi;
  return lo_ok && hi_ok;
}

std::string Range::describe() const {
  return std::string(lo_open ? "(" : "[") + format_bound(lo) + ", " + format_bound(hi) +
         (hi_open ? ")" : "]");
}

Range closed(double lo, double hi) { return Range{lo, hi, false, false}; }
Range above(double lo, double hi) { return Range{lo, hi, true, false}; }
Range below(double lo, double hi) { return Range{lo, hi, false, true}; }

std::string describe_choices(const std::vector<Choice>& choices) {
  std::string out;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (i > 0) out += i + 1 == choices.size() ? " or " : ", ";
    out += choices[i].name;
  }
  return out;
}

size_t parse_choice_index(const std::string& name, const std::vector<Choice>& choices,
                          const std::string& path) {
  for (size_t i = 0; i < choices.size(); ++i)
    if (name == choices[i].name) return i;
  throw Error(path + ": expected " + describe_choices(choices) + ", got \"" + name + "\"");
}

std::string did_you_mean(const std::string& key, const std::vector<std::string>& candidates) {
  const std::string* best = nullptr;
  size_t best_distance = 0;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(key, c);
    if (!best || d < best_distance) best = &c, best_distance = d;
  }
  // A typo: a few edits, and fewer than half the key's letters.
  if (!best || best_distance == 0 || best_distance > std::max<size_t>(2, key.size() / 3) ||
      2 * best_distance >= key.size())
    return "";
  return " (did you mean \"" + *best + "\"?)";
}

// ---- values -------------------------------------------------------------------------------

void read_config_value(const json& v, const std::string& path, int64_t& out) {
  // 2^63 as a double: the first value that no longer fits an int64.
  constexpr double kLimit = 9223372036854775808.0;
  if (v.is_number_integer() &&
      !(v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))) {
    out = v.get<int64_t>();
  } else if (v.is_number_float() && std::isfinite(v.get<double>()) &&
             std::fabs(v.get<double>()) < kLimit &&
             v.get<double>() == std::trunc(v.get<double>())) {
    out = static_cast<int64_t>(v.get<double>());
  } else {
    throw Error(path + ": expected an integer, got " + v.dump());
  }
}

void read_config_value(const json& v, const std::string& path, double& out) {
  POLAR_CHECK(v.is_number(), path, ": expected a number, got ", v.dump());
  out = v.get<double>();
}

void read_config_value(const json& v, const std::string& path, bool& out) {
  POLAR_CHECK(v.is_boolean(), path, ": expected true or false, got ", v.dump());
  out = v.get<bool>();
}

void read_config_value(const json& v, const std::string& path, std::string& out) {
  POLAR_CHECK(v.is_string(), path, ": expected a string, got ", v.dump());
  out = v.get<std::string>();
}

void read_config_value(const json& v, const std::string& path, StringList& out) {
  POLAR_CHECK(v.is_array(), path, ": expected a list of strings, got ", v.dump());
  out.clear();
  for (size_t i = 0; i < v.size(); ++i) {
    POLAR_CHECK(v[i].is_string(), path, "[", i, "]: expected a string, got ", v[i].dump());
    out.push_back(v[i].get<std::string>());
  }
}

void check_config_limit(const Limit& limit, const std::string& path, int64_t v) {
  POLAR_CHECK(!limit.has_range || limit.range.contains(static_cast<double>(v)), path,
              ": expected an integer in ", limit.range.describe(), ", got ", v);
}

void check_config_limit(const Limit& limit, const std::string& path, double v) {
  POLAR_CHECK(!limit.has_range || limit.range.contains(v), path, ": expected a number in ",
              limit.range.describe(), ", got ", v);
}

void check_config_limit(const Limit& limit, const std::string& path, const std::string& v) {
  POLAR_CHECK(!limit.non_empty || !v.empty(), path, ": must not be empty");
  POLAR_CHECK(!limit.accepts || limit.accepts(v), path, ": expected ", limit.expected, ", got \"",
              v, "\"");
}

void check_config_limit(const Limit& limit, const std::string& path, const StringList& v) {
  POLAR_CHECK(!limit.non_empty || !v.empty(), path, ": expected a non-empty list of ",
              limit.expected);
  for (size_t i = 0; i < v.size(); ++i) {
    POLAR_CHECK(!limit.accepts || limit.accepts(v[i]), path, "[", i, "]: expected ", limit.expected,
                ", got \"", v[i], "\"");
    for (size_t k = 0; k < i; ++k)
      POLAR_CHECK(v[k] != v[i], path, ": \"", v[i], "\" is listed twice");
  }
}

// ---- visitors -----------------------------------------------------------------------------

SchemaReader::SchemaReader(const json& obj, std::string where, std::string prefix)
    : obj_(obj), where_(std::move(where)), prefix_(std::move(prefix)) {
  POLAR_CHECK(obj_.is_object(), where_, prefix_.empty() ? "" : ": ",
              prefix_.empty() ? "" : prefix_.substr(0, prefix_.size() - 1),
              ": expected a JSON object, got ", obj_.type_name());
}

std::string SchemaReader::path(const char* key) const {
  return (where_.empty() ? "" : where_ + ": ") + prefix_ + key;
}

const json* SchemaReader::find(const char* key) {
  known_.emplace_back(key);
  auto it = obj_.find(key);
  return it == obj_.end() ? nullptr : &*it;
}

void SchemaReader::finish() const {
  for (auto it = obj_.begin(); it != obj_.end(); ++it) {
    if (std::find(known_.begin(), known_.end(), it.key()) != known_.end()) continue;
    throw Error(path(it.key().c_str()) + ": unknown key" + did_you_mean(it.key(), known_) +
                "; `polar config --explain" + (prefix_.empty() ? "" : " ") +
                prefix_.substr(0, prefix_.empty() ? 0 : prefix_.size() - 1) + "` lists the keys");
  }
}

std::string SchemaDocs::describe_limit(const Limit& limit) {
  if (limit.has_range) return limit.range.describe();
  return limit.expected;
}

void apply_schema_override(json& root, const std::string& assignment,
                           const std::vector<KeyDoc>& docs) {
  const auto eq = assignment.find('=');
  POLAR_CHECK(eq != std::string::npos && eq > 0, "--set ", assignment, ": expected KEY=VALUE");
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  const KeyDoc* doc = nullptr;
  std::vector<std::string> paths;
  for (const auto& d : docs) {
    if (d.path == key) doc = &d;
    paths.push_back(d.path);
  }
  POLAR_CHECK(doc != nullptr, "--set ", assignment, ": unknown key ", key, did_you_mean(key, paths),
              "; `polar config --keys` lists the keys");
  std::string value = text;
  if (doc->type == "string" || doc->type == "choice") {
    // Text as given; a JSON string (quoted) or null is taken as JSON.
    const bool json_text = text == "null" || (text.size() >= 2 && text.front() == '"');
    if (!json_text) value = json(text).dump();
  } else if (doc->type == "list" && (text.empty() || text.front() != '[')) {
    json list = json::array();  // "q,v" as well as ["q","v"]
    for (size_t start = 0; start <= text.size();) {
      const size_t comma = std::min(text.find(',', start), text.size());
      list.push_back(text.substr(start, comma - start));
      start = comma + 1;
    }
    value = list.dump();
  }
  apply_override(root, key + "=" + value);
}

}  // namespace polar
