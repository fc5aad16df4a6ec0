// Placeholder until the interop module lands.
#include <CLI/CLI.hpp>

#include "polar/cli/commands.h"

namespace polar::cli {
void add_interop_commands(CLI::App& app) { (void)app; }
}  // namespace polar::cli
