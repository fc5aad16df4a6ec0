// The visitors that turn a schema (polar/common/config_schema.h) into a parser, a writer, a limit
// checker and reference docs. A schema struct calls, from its visit_keys:
//   v(KeySpec<T>, member)             one key
//   v.section("name", member, help)   a nested object with its own keys
//   v.flatten(member)                 another schema's keys in the same object
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <type_traits>
#include <vector>

#include "polar/common/config_schema.h"
#include "polar/common/error.h"

namespace polar {

// Reads one JSON value of a key; errors name `path` and say what was expected.
void read_config_value(const nlohmann::json& v, const std::string& path, int64_t& out);
void read_config_value(const nlohmann::json& v, const std::string& path, double& out);
void read_config_value(const nlohmann::json& v, const std::string& path, bool& out);
void read_config_value(const nlohmann::json& v, const std::string& path, std::string& out);
void read_config_value(const nlohmann::json& v, const std::string& path, StringList& out);
template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
void read_config_value(const nlohmann::json& v, const std::string& path, E& out) {
  POLAR_CHECK(v.is_string(), path, ": expected ", describe_choices(choices_of<E>()), ", got ",
              v.dump());
  out = parse_enum<E>(v.get<std::string>(), path);
}

// Checks a value against its key's limit; errors name `path` and the allowed values.
void check_config_limit(const Limit& limit, const std::string& path, int64_t v);
void check_config_limit(const Limit& limit, const std::string& path, double v);
void check_config_limit(const Limit& limit, const std::string& path, const std::string& v);
void check_config_limit(const Limit& limit, const std::string& path, const StringList& v);
template <class T>
void check_config_limit(const Limit&, const std::string&, const T&) {}  // bool, enums

template <class T>
nlohmann::json config_value_json(const T& v) {
  if constexpr (std::is_enum_v<T>)
    return choice_name(v);
  else
    return v;
}

// The type of a key as the docs and messages name it.
template <class T>
const char* config_type_name() {
  if constexpr (std::is_enum_v<T>) return "choice";
  if constexpr (std::is_same_v<T, bool>) return "bool";
  if constexpr (std::is_integral_v<T>) return "integer";
  if constexpr (std::is_floating_point_v<T>) return "number";
  if constexpr (std::is_same_v<T, StringList>) return "list";
  return "string";
}

// What a key of type T takes, as messages say it: "an integer", "fp32 or bf16".
template <class T>
std::string config_expected() {
  if constexpr (std::is_enum_v<T>) return describe_choices(choices_of<T>());
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  if constexpr (std::is_integral_v<T>) return "an integer";
  if constexpr (std::is_floating_point_v<T>) return "a number";
  if constexpr (std::is_same_v<T, StringList>) return "a list of strings";
  return "a string";
}

// Parses one JSON object into a schema struct. Keys absent keep their defaults; null, wrong types,
// values outside their limit and unknown keys (with a "did you mean") are errors naming
// "<where>: <key path>".
class SchemaReader {
 public:
  SchemaReader(const nlohmann::json& obj, std::string where, std::string prefix = "");

  template <class S>
  void read(S& s) {
    S::visit_keys(s, *this);
    finish();
  }
  template <class T>
  void operator()(const KeySpec<T>& k, T& member) {
    if (const nlohmann::json* v = find(k.name)) {
      POLAR_CHECK(!v->is_null(), path(k.name), ": expected ", config_expected<T>(),
                  ", got null (leave the key out for the default)");
      read_config_value(*v, path(k.name), member);
      check_config_limit(k.limit, path(k.name), member);
    }
  }
  template <class S>
  void section(const char* name, S& s, const char* /*help*/) {
    if (const nlohmann::json* v = find(name)) {
      POLAR_CHECK(v->is_object(), path(name), ": expected an object, got ", v->dump());
      SchemaReader(*v, where_, prefix_ + name + ".").read(s);
    }
  }
  template <class S>
  void flatten(S& s) {
    S::visit_keys(s, *this);
  }

 private:
  // The value of `key` or nullptr when absent; records the key as known.
  const nlohmann::json* find(const char* key);
  std::string path(const char* key) const;
  void finish() const;

  const nlohmann::json& obj_;
  std::string where_, prefix_;
  std::vector<std::string> known_;
};

// Writes a schema struct as JSON (every key, defaults included).
class SchemaWriter {
 public:
  template <class S>
  static nlohmann::json write(const S& s) {
    SchemaWriter w;
    S::visit_keys(s, w);
    return std::move(w.out_);
  }
  template <class T>
  void operator()(const KeySpec<T>& k, const T& member) {
    out_[k.name] = config_value_json(member);
  }
  template <class S>
  void section(const char* name, const S& s, const char* /*help*/) {
    out_[name] = write(s);
  }
  template <class S>
  void flatten(const S& s) {
    S::visit_keys(s, *this);
  }

 private:
  nlohmann::json out_ = nlohmann::json::object();
};

// Checks every value of a schema struct against its limit (for structs built in code rather
// than parsed); errors name "<prefix><key>".
class SchemaLimitChecker {
 public:
  explicit SchemaLimitChecker(std::string prefix) : prefix_(std::move(prefix)) {}
  template <class S>
  void check(const S& s) {
    S::visit_keys(s, *this);
  }
  template <class T>
  void operator()(const KeySpec<T>& k, const T& member) {
    check_config_limit(k.limit, prefix_ + k.name, member);
  }
  template <class S>
  void section(const char* name, const S& s, const char* /*help*/) {
    SchemaLimitChecker(prefix_ + name + ".").check(s);
  }
  template <class S>
  void flatten(const S& s) {
    S::visit_keys(s, *this);
  }

 private:
  std::string prefix_;
};

// The reference entry of every key (and a one-line entry per section, type "section").
class SchemaDocs {
 public:
  template <class S>
  static std::vector<KeyDoc> collect(const S& defaults, const std::string& prefix = "") {
    SchemaDocs d;
    d.prefix_ = prefix;
    S::visit_keys(defaults, d);
    return std::move(d.docs_);
  }
  template <class T>
  void operator()(const KeySpec<T>& k, const T& /*member*/) {
    KeyDoc d;
    d.path = prefix_ + k.name;
    d.type = config_type_name<T>();
    d.default_json = config_value_json(k.default_value).dump();
    if constexpr (std::is_enum_v<T>) {
      d.choices = choices_of<T>();
      d.allowed = describe_choices(d.choices);
    } else {
      d.allowed = describe_limit(k.limit);
    }
    d.unit = k.unit;
    d.help = k.help;
    docs_.push_back(std::move(d));
  }
  template <class S>
  void section(const char* name, const S& s, const char* help) {
    KeyDoc d;
    d.path = prefix_ + name;
    d.type = "section";
    d.help = help;
    docs_.push_back(std::move(d));
    for (auto& sub : collect(s, prefix_ + name + ".")) docs_.push_back(std::move(sub));
  }
  template <class S>
  void flatten(const S& s) {
    S::visit_keys(s, *this);
  }

 private:
  static std::string describe_limit(const Limit& limit);
  std::string prefix_;
  std::vector<KeyDoc> docs_;
};

// Applies one `--set KEY=VALUE` to a config's JSON, typed by the schema's `docs`: an unknown key
// is an error with a "did you mean"; a string or choice key takes VALUE as text (JSON quotes
// optional), other keys parse VALUE as JSON. A section name takes any JSON (the parser then
// checks it).
void apply_schema_override(nlohmann::json& root, const std::string& assignment,
                           const std::vector<KeyDoc>& docs);

}  // namespace polar
