// Placeholder until the eval module lands.
#include <CLI/CLI.hpp>

#include "polar/cli/commands.h"

namespace polar::cli {
void add_eval_commands(CLI::App& app) { (void)app; }
}  // namespace polar::cli
