#include "polar/common/json_config.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <unistd.h>
#include <fcntl.h>

namespace polar {

using nlohmann::json;

ConfigReader::ConfigReader(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {
  POLAR_CHECK(obj_.is_object(), where_, ": expected a JSON object, got ", obj_.type_name());
}

std::string ConfigReader::path(const char* key) const { return where_ + "." + key; }

namespace {
template <typename T>
bool fetch(const json& obj, const char* key, std::set<std::string>& seen, const json*& v) {
  seen.insert(key);
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return false;
  v = &*it;
  return true;
}
}  // namespace

void ConfigReader::get(const char* key, int64_t& out) {
  const json* v = nullptr;
  if (!fetch<int64_t>(obj_, key, seen_, v)) return;
  if (v->is_number_integer()) {
    out = v->get<int64_t>();
  } else if (v->is_number_float() && v->get<double>() == static_cast<double>(static_cast<int64_t>(v->get<double>()))) {
    out = static_cast<int64_t>(v->get<double>());
  } else {
    throw Error(path(key) + ": expected an integer, got " + v->dump());
  }
}

void ConfigReader::get(const char* key, int& out) {
  int64_t wide = out;
  get(key, wide);
  out = static_cast<int>(wide);
}

void ConfigReader::get(const char* key, double& out) {
  const json* v = nullptr;
  if (!fetch<double>(obj_, key, seen_, v)) return;
  POLAR_CHECK(v->is_number(), path(key), ": expected a number, got ", v->dump());
  out = v->get<double>();
}

void ConfigReader::get(const char* key, bool& out) {
  const json* v = nullptr;
  if (!fetch<bool>(obj_, key, seen_, v)) return;
  POLAR_CHECK(v->is_boolean(), path(key), ": expected true or false, got ", v->dump());
  out = v->get<bool>();
}

void ConfigReader::get(const char* key, std::string& out) {
  const json* v = nullptr;
  if (!fetch<std::string>(obj_, key, seen_, v)) return;
  POLAR_CHECK(v->is_string(), path(key), ": expected a string, got ", v->dump());
  out = v->get<std::string>();
}

void ConfigReader::get(const char* key, std::vector<std::string>& out) {
  const json* v = nullptr;
  if (!fetch<std::string>(obj_, key, seen_, v)) return;
  if (v->is_string()) {
    out = {v->get<std::string>()};
    return;
  }
  POLAR_CHECK(v->is_array(), path(key), ": expected a string or a list of strings, got ", v->dump());
  out.clear();
  for (const auto& e : *v) {
    POLAR_CHECK(e.is_string(), path(key), ": expected a list of strings, got element ", e.dump());
    out.push_back(e.get<std::string>());
  }
}

const json* ConfigReader::object(const char* key) {
  seen_.insert(key);
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) return nullptr;
  POLAR_CHECK(it->is_object(), path(key), ": expected an object, got ", it->dump());
  return &*it;
}

void ConfigReader::finish() const {
  std::string unknown;
  for (auto it = obj_.begin(); it != obj_.end(); ++it) {
    if (!seen_.count(it.key())) unknown += (unknown.empty() ? "" : ", ") + it.key();
  }
  POLAR_CHECK(unknown.empty(), where_, ": unknown key(s): ", unknown,
              " (check the spelling; see configs/ for the accepted keys)");
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  POLAR_CHECK(in.good(), path, ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::parse_error& e) {
    throw Error(path + ": invalid JSON: " + e.what());
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
  std::string key = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  json value;
  try {
    value = json::parse(text);
  } catch (const json::parse_error&) {
    value = text;
  }
  json* node = &root;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    POLAR_CHECK(!part.empty(), "--set ", assignment, ": empty key component");
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    json& child = (*node)[part];
    if (child.is_null()) child = json::object();
    POLAR_CHECK(child.is_object(), "--set ", assignment, ": ", key.substr(0, dot), " is not an object");
    node = &child;
    start = dot + 1;
  }
}

}  // namespace polar
