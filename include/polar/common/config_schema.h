// The schema of a configuration: every key is declared once, in a KEYS list beside its struct,
// with its type, default, allowed values, unit and one line of help:
//
//   #define POLAR_EVAL_KEYS(KEY) KEY(int64_t, every, 0, closed(0, kMaxCount), "steps", "help")
//   struct EvalSection {
//     POLAR_CONFIG_KEYS(POLAR_EVAL_KEYS)
//   };
//
// POLAR_CONFIG_KEYS declares the members (with their defaults) and a visit_keys() that hands each
// key's KeySpec and member to a visitor; parsing with unknown-key errors, range and choice checks,
// to_json, `--set`, and the reference docs are visitors (polar/common/config_visitors.h), so none
// of them repeats a key. Choices are enums declared with POLAR_CONFIG_ENUM: strings exist only in
// the JSON and in the docs.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace polar {

// The type of a key that takes a list of strings (its Limit applies to each element).
using StringList = std::vector<std::string>;

// A closed or half-open interval for a numeric config value; describe() renders "[0, 1)".
struct Range {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;
  bool contains(double v) const;
  std::string describe() const;
};
Range closed(double lo, double hi);
Range above(double lo, double hi);  // (lo, hi]
Range below(double lo, double hi);  // [lo, hi)

// What a key accepts beyond its type: a range for numbers; for strings, non-empty or a pattern
// (`accepts` with `expected` in words).
struct Limit {
  bool has_range = false;
  Range range;
  bool non_empty = false;
  bool (*accepts)(const std::string&) = nullptr;
  const char* expected = "";
  Limit() = default;
  Limit(Range r) : has_range(true), range(r) {}  // NOLINT: a range is a limit
};
inline Limit any() { return Limit(); }
inline Limit non_empty() {
  Limit l;
  l.non_empty = true;
  l.expected = "a non-empty string";
  return l;
}
inline Limit matching(bool (*accepts)(const std::string&), const char* expected) {
  Limit l;
  l.accepts = accepts;
  l.expected = expected;
  return l;
}

// A non-empty list of distinct strings, each accepted by `accepts` (for a StringList key).
inline Limit list_of(bool (*accepts)(const std::string&), const char* expected) {
  Limit l = matching(accepts, expected);
  l.non_empty = true;
  return l;
}

// One choice of an enum key: its JSON spelling and one line of help.
struct Choice {
  const char* name;
  const char* help;
};

// One key: its JSON name, default, limit, unit ("" when none) and help.
template <class T>
struct KeySpec {
  const char* name;
  T default_value;
  Limit limit;
  const char* unit;
  const char* help;
};

// The reference entry of one key, for `polar config --explain`, `--keys`, `--set` and
// docs/config.md.
struct KeyDoc {
  std::string path;          // "train.lr"
  std::string type;          // integer | number | bool | string | list | choice
  std::string default_json;  // the default as JSON text
  std::string allowed;       // "(0, 1]", "fp32 | bf16", "a non-empty string" or ""
  std::vector<Choice> choices;
  std::string unit;
  std::string help;
};

// "a, b or c": the choices as a message lists them.
std::string describe_choices(const std::vector<Choice>& choices);
// The index of `name` among `choices`; throws "<path>: expected a, b or c, got "x"".
size_t parse_choice_index(const std::string& name, const std::vector<Choice>& choices,
                          const std::string& path);
// " (did you mean \"lr\"?)" for the candidate closest to `key` in edit distance, when close
// enough to be a typo; "" otherwise.
std::string did_you_mean(const std::string& key, const std::vector<std::string>& candidates);

// The choices of an enum declared with POLAR_CONFIG_ENUM (found by argument-dependent lookup).
template <class E>
const std::vector<Choice>& choices_of() {
  return config_choices(E{});
}
// The JSON spelling of an enum value.
template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
const char* choice_name(E value) {
  return choices_of<E>()[static_cast<size_t>(value)].name;
}
// The enum value spelt `name`; errors name `path` and list the choices.
template <class E>
E parse_enum(const std::string& name, const std::string& path) {
  return static_cast<E>(parse_choice_index(name, choices_of<E>(), path));
}

}  // namespace polar

// POLAR_CONFIG_ENUM(Precision, LIST) with LIST(X) = X(Fp32, "fp32", "help") X(Bf16, "bf16", ...)
// declares `enum class Precision { Fp32, Bf16 }` and its choices, in the enclosing namespace.
#define POLAR_ENUM_VALUE_(id, name, help) id,
#define POLAR_ENUM_CHOICE_(id, name, help) ::polar::Choice{name, help},
#define POLAR_CONFIG_ENUM(Type, LIST)                                      \
  enum class Type { LIST(POLAR_ENUM_VALUE_) };                             \
  inline const std::vector<::polar::Choice>& config_choices(Type) {        \
    static const std::vector<::polar::Choice> c{LIST(POLAR_ENUM_CHOICE_)}; \
    return c;                                                              \
  }

// Inside a struct: the members of a KEYS list with their defaults, and
// `template <class Self, class V> static void visit_keys(Self& self, V& v)` calling
// v(KeySpec<type>, self.member) for each key in order.
#define POLAR_KEY_MEMBER_(type, name, def, limit, unit, help) type name = def;
#define POLAR_KEY_VISIT_(type, name, def, limit, unit, help) \
  v(::polar::KeySpec<type>{#name, type(def), limit, unit, help}, self.name);
#define POLAR_CONFIG_KEYS(LIST)              \
  LIST(POLAR_KEY_MEMBER_)                    \
  template <class Self, class V>             \
  static void visit_keys(Self& self, V& v) { \
    LIST(POLAR_KEY_VISIT_)                   \
  }
// For a struct that also holds sections: POLAR_CONFIG_MEMBERS(LIST) declares the members, and its
// own visit_keys calls POLAR_CONFIG_VISIT(LIST) beside v.section(...) / v.flatten(...).
#define POLAR_CONFIG_MEMBERS(LIST) LIST(POLAR_KEY_MEMBER_)
#define POLAR_CONFIG_VISIT(LIST) LIST(POLAR_KEY_VISIT_)
