// Parsing a command line without running it: with POLAR_DRY_PARSE set, `polar` and `polar-run`
// parse argv with their own CLI definitions and exit (0, or the CLI error) instead of running
// anything. scripts/check_docs.py checks every command the documentation shows this way.
//   =1        complete: every flag known, every required flag given
//   =partial  flags (and a subcommand) may be left out; every flag given must be known
//   =batch    polar only: many command lines, one JSON request a stdin line (tools/polar.cpp)
// An option value equal to kDryParsePlaceholder stands for "some valid value" (a documented FILE,
// N, ...) and is replaced by the option's default. Validators that look at the file system
// (existing file, directory) are off: documented paths need not exist here.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

namespace polar::cli {

enum class DryParse { kOff, kComplete, kPartial };

inline constexpr const char* kDryParsePlaceholder = "@value@";

inline DryParse dry_parse_mode() {
  const char* v = std::getenv("POLAR_DRY_PARSE");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "0") == 0) return DryParse::kOff;
  return std::strcmp(v, "partial") == 0 ? DryParse::kPartial : DryParse::kComplete;
}

// Thrown once the command line is parsed and checked, before any command callback runs.
struct DryParseDone {};

// Makes `app` and its subcommands parse only: the parse stops (DryParseDone) before any callback,
// placeholders become defaults, file-system validators are off; in partial mode nothing is
// required. (The callbacks stay in place: they own the variables the options write to.)
inline void make_dry(CLI::App& app, DryParse mode) {
  if (app.get_parent() == nullptr) app.parse_complete_callback([] { throw DryParseDone(); });
  if (mode == DryParse::kPartial) app.require_subcommand(0, app.get_require_subcommand_max());
  for (CLI::Option* opt : app.get_options()) {
    for (int i = 0;; ++i) {
      CLI::Validator* v = nullptr;
      try {
        v = opt->get_validator(i);
      } catch (const CLI::OptionNotFound&) {
        break;
      }
      const std::string kind = v->get_description();  // CLI::ExistingFile's is "FILE", ...
      if (kind == "FILE" || kind == "DIR" || kind.rfind("PATH(", 0) == 0) v->active(false);
    }
    if (opt->get_expected_min() == 0) continue;  // a flag
    opt->capture_default_str();
    std::string fallback = opt->get_default_str();
    if (fallback.empty() || fallback.front() == '[') fallback = "1";
    opt->transform(
        [fallback](std::string value) { return value == kDryParsePlaceholder ? fallback : value; });
    if (mode == DryParse::kPartial) opt->required(false);
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) make_dry(*sub, mode);
}

// Parses argv with a dry `app`: 0 when the command line is complete (or partial, as asked) and
// valid; else CLI11's exit code, with "dry-parse: <CLI11 error name>: <message>" on stderr. Help
// and version requests print as usual.
// `parsed` (if given) tells a parsed command line from a help or version request.
inline int dry_parse(CLI::App& app, int argc, const char* const* argv, bool* parsed = nullptr) {
  if (parsed != nullptr) *parsed = false;
  try {
    app.parse(argc, argv);
  } catch (const DryParseDone&) {
    if (parsed != nullptr) *parsed = true;
    return 0;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "dry-parse: " << e.get_name() << ": " << e.what() << "\n";
    return e.get_exit_code();
  }
  return 0;
}

}  // namespace polar::cli
