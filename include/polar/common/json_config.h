// Typed configuration from JSON: a ConfigReader walks one JSON object, reads typed fields, and
// rejects unknown keys and wrong types with the full key path ("train.lr: expected a number").
#pragma once

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

#include "polar/common/config_schema.h"  // Range, closed, above, below
#include "polar/common/error.h"

namespace polar {

class ConfigReader {
 public:
  // `where` prefixes every message (e.g. "configs/tiny.json: model").
  ConfigReader(const nlohmann::json& obj, std::string where);

  // Each getter leaves `out` unchanged when the key is absent; null is a type error (a key
  // present with no value is a mistake, not a request for the default).
  void get(const char* key, int64_t& out);
  void get(const char* key, int& out);
  void get(const char* key, double& out);
  // Numeric getters that also check the value lies in `range` ("train.beta1: expected a number
  // in [0, 1), got 2").
  void get(const char* key, int64_t& out, const Range& range);
  void get(const char* key, double& out, const Range& range);
  void get(const char* key, bool& out);
  void get(const char* key, std::string& out);
  void get(const char* key, std::vector<std::string>& out);
  // Nested object, or nullptr when absent (null is a type error); the child's keys are checked by
  // its own reader.
  const nlohmann::json* object(const char* key);
  // Throws naming every key of the object that no getter asked for.
  void finish() const;

  std::string path(const char* key) const;

 private:
  const nlohmann::json& obj_;
  std::string where_;
  std::set<std::string> seen_;
};

// Reads a JSON file; errors (syntax, numbers out of range such as 1e999) name the file and the
// parse position.
nlohmann::json read_json_file(const std::string& path);
// Writes JSON atomically (temp file in the same directory, then rename).
void write_json_file_atomic(const std::string& path, const nlohmann::json& value, int indent = 2);
// Writes bytes atomically (temp file, fsync, rename).
void write_file_atomic(const std::string& path, const std::string& bytes);

// Parses JSON text; every nlohmann exception becomes polar::Error(where + ": invalid JSON: ...").
nlohmann::json parse_json_text(const std::string& text, const std::string& where);

// Applies "a.b.c=value" overrides to a JSON object (`root` must be an object). The value is parsed
// as JSON when it parses (numbers, true/false, quoted strings, arrays), otherwise taken as a
// string.
void apply_override(nlohmann::json& root, const std::string& assignment);

}  // namespace polar
