#include "polar/common/json_config.h"

#include <fcntl.h>
#include <unistd.h>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace polar {

using nlohmann::json;

ConfigReader::ConfigReader(const json& obj, std::string where)
    : obj_(obj), where_(std::move(where)) {
  POLAR_CHECK(obj_.is_object(), where_, ": expected a JSON object, got ", obj_.type_name());
}

std::string ConfigReader::path(const char* key) const { return where_ + "." + key; }

namespace {

// The value of `key`, or nullptr when absent. A present null is rejected: `expected` says what
// the key takes.
const json* fetch(const json& obj, const char* key, std::set<std::string>& seen,
                  const std::string& path, const char* expected) {
  seen.insert(key);
  auto it = obj.find(key);
  if (it == obj.end()) return nullptr;
  POLAR_CHECK(!it->is_null(), path, ": expected ", expected,
              ", got null (leave the key out for the default)");
  return &*it;
}

}  // namespace

void ConfigReader::get(const char* key, int64_t& out) {
  const json* v = fetch(obj_, key, seen_, path(key), "an integer");
  if (!v) return;
  // 2^63 as a double: the first value that no longer fits an int64.
  constexpr double kLimit = 9223372036854775808.0;
  if (v->is_number_integer() &&
      !(v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))) {
    out = v->get<int64_t>();
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
             std::fabs(v->get<double>()) < kLimit &&
             v->get<double>() == std::trunc(v->get<double>())) {
    out = static_cast<int64_t>(v->get<double>());
  } else {
    throw Error(path(key) + ": expected an integer, got " + v->dump());
  }
}

void ConfigReader::get(const char* key, int& out) {
  int64_t wide = out;
  get(key, wide);
  POLAR_CHECK(wide >= INT32_MIN && wide <= INT32_MAX, path(key), ": expected an integer in [",
              INT32_MIN, ", ", INT32_MAX, "], got ", wide);
  out = static_cast<int>(wide);
}

void ConfigReader::get(const char* key, double& out) {
  const json* v = fetch(obj_, key, seen_, path(key), "a number");
  if (!v) return;
  POLAR_CHECK(v->is_number(), path(key), ": expected a number, got ", v->dump());
  out = v->get<double>();
}

void ConfigReader::get(const char* key, int64_t& out, const Range& range) {
  get(key, out);
  POLAR_CHECK(range.contains(static_cast<double>(out)), path(key), ": expected an integer in ",
              range.describe(), ", got ", out);
}

void ConfigReader::get(const char* key, double& out, const Range& range) {
  get(key, out);
  POLAR_CHECK(range.contains(out), path(key), ": expected a number in ", range.describe(), ", got ",
              out);
}

void ConfigReader::get(const char* key, bool& out) {
  const json* v = fetch(obj_, key, seen_, path(key), "true or false");
  if (!v) return;
  POLAR_CHECK(v->is_boolean(), path(key), ": expected true or false, got ", v->dump());
  out = v->get<bool>();
}

void ConfigReader::get(const char* key, std::string& out) {
  const json* v = fetch(obj_, key, seen_, path(key), "a string");
  if (!v) return;
  POLAR_CHECK(v->is_string(), path(key), ": expected a string, got ", v->dump());
  out = v->get<std::string>();
}

void ConfigReader::get(const char* key, std::vector<std::string>& out) {
  const json* v = fetch(obj_, key, seen_, path(key), "a string or a list of strings");
  if (!v) return;
  if (v->is_string()) {
    out = {v->get<std::string>()};
    return;
  }
  POLAR_CHECK(v->is_array(), path(key), ": expected a string or a list of strings, got ",
              v->dump());
  out.clear();
  for (const auto& e : *v) {
    POLAR_CHECK(e.is_string(), path(key), ": expected a list of strings, got element ", e.dump());
    out.push_back(e.get<std::string>());
  }
}

const json* ConfigReader::object(const char* key) {
  const json* v = fetch(obj_, key, seen_, path(key), "an object");
  if (!v) return nullptr;
  POLAR_CHECK(v->is_object(), path(key), ": expected an object, got ", v->dump());
  return v;
}

void ConfigReader::finish() const {
  std::string unknown;
  for (auto it = obj_.begin(); it != obj_.end(); ++it) {
    if (!seen_.count(it.key())) unknown += (unknown.empty() ? "" : ", ") + it.key();
  }
  if (unknown.empty()) return;
  std::string hint;
  for (auto it = obj_.begin(); it != obj_.end() && hint.empty(); ++it)
    if (!seen_.count(it.key()))
      hint = did_you_mean(it.key(), std::vector<std::string>(seen_.begin(), seen_.end()));
  throw Error(where_ + ": unknown key(s): " + unknown + hint +
              " (check the spelling; see configs/ for the accepted keys)");
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  POLAR_CHECK(in.good(), path, ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  POLAR_CHECK(!in.bad(), path, ": read error");
  return parse_json_text(ss.str(), path);
}

json parse_json_text(const std::string& text, const std::string& where) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    // parse_error carries the byte position; out_of_range.406 (a number such as 1e999) does not.
    throw Error(where + ": invalid JSON: " + e.what());
  }
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  POLAR_CHECK(fd >= 0, tmp, ": cannot create file");
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(tmp + ": write failed");
    }
    done += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw Error(path + ": cannot rename temporary file into place");
  }
}

void write_json_file_atomic(const std::string& path, const json& value, int indent) {
  write_file_atomic(path, value.dump(indent) + "\n");
}

void apply_override(json& root, const std::string& assignment) {
  auto eq = assignment.find('=');
  POLAR_CHECK(eq != std::string::npos && eq > 0, "--set ", assignment, ": expected KEY=VALUE");
  POLAR_CHECK(root.is_object(), "--set ", assignment, ": the config is not a JSON object");
  std::string key = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  json value;
  try {
    value = json::parse(text);
  } catch (const json::out_of_range& e) {
    throw Error("--set " + assignment + ": number out of range (" + e.what() + ")");
  } catch (const json::parse_error&) {
    value = text;
  }
  json* node = &root;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    std::string part =
        key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    POLAR_CHECK(!part.empty(), "--set ", assignment, ": empty key component");
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    json& child = (*node)[part];
    if (child.is_null()) child = json::object();
    POLAR_CHECK(child.is_object(), "--set ", assignment, ": ", key.substr(0, dot),
                " is not an object");
    node = &child;
    start = dot + 1;
  }
}

}  // namespace polar
