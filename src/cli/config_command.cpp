// `polar config [--keys | --markdown | --explain [KEY] | --resolve FILE [--set KEY=VALUE ...]]`:
// the training configuration's reference, from its schema (include/polar/config/train_config.h).
#include <CLI/CLI.hpp>

#include <iostream>
#include <nlohmann/json.hpp>

#include "polar/cli/commands.h"
#include "polar/config/train_config.h"

namespace polar::cli {

void add_config_command(CLI::App& app) {
  struct Args {
    bool keys = false, markdown = false;
    std::string explain, resolve;
    std::vector<std::string> overrides;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "config", "the training config's keys: reference, docs/config.md, resolved configs");
  auto* keys = cmd->add_flag("--keys", a->keys, "print every key path (sections too), one a line");
  auto* markdown =
      cmd->add_flag("--markdown", a->markdown, "print the reference as markdown (docs/config.md)");
  auto* explain = cmd->add_option("--explain", a->explain,
                                  "explain KEY (a key path such as train.lr, or a section); "
                                  "without KEY, every key")
                      ->expected(0, 1);
  auto* resolve = cmd->add_option("--resolve", a->resolve,
                                  "print FILE's resolved config (every key, defaults filled in)")
                      ->check(CLI::ExistingFile);
  cmd->add_option("--set", a->overrides, "override a key of --resolve's FILE (repeatable)");
  keys->excludes(markdown, explain, resolve);
  markdown->excludes(explain, resolve);
  explain->excludes(resolve);
  cmd->callback([a] {
    if (a->keys) {
      for (const KeyDoc& d : train_config_keys()) std::cout << d.path << "\n";
    } else if (a->markdown) {
      std::cout << train_config_markdown();
    } else if (!a->resolve.empty()) {
      std::cout << load_train_config(a->resolve, a->overrides).to_json().dump(2) << "\n";
    } else {
      std::cout << explain_config_key(a->explain);
    }
  });
}

}  // namespace polar::cli
