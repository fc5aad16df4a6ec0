// `polar config`: the default run config as JSON; `polar config --keys`: every key path of it
// (`section.key`, sections too), one a line, sorted, for tools that check names against the
// schema (scripts/check_docs.py checks every key the documentation names).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <iostream>
#include <string>

#include "polar/cli/commands.h"
#include "polar/config/train_config.h"
#include "polar/model/lora_config.h"

namespace polar::cli {

namespace {

void print_key_paths(const nlohmann::json& j, const std::string& prefix) {
  for (const auto& [key, value] : j.items()) {
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    std::cout << path << "\n";
    if (value.is_object()) print_key_paths(value, path);
  }
}

}  // namespace

void add_config_command(CLI::App& app) {
  auto keys = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("config", "print the default run config (the keys of --config)");
  cmd->add_flag("--keys", *keys, "print every key path (section.key), one a line");
  cmd->callback([keys] {
    const nlohmann::json defaults = TrainConfig{}.to_json();
    if (*keys) {
      // model.lora is written only when enabled; its keys are keys all the same.
      nlohmann::json all = defaults;
      all["model"]["lora"] = LoraConfig{}.to_json();
      print_key_paths(all, "");
    } else {
      std::cout << defaults.dump(2) << "\n";
    }
  });
}

}  // namespace polar::cli
