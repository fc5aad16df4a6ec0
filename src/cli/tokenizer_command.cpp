// Placeholder until the tokenizer module lands.
#include <CLI/CLI.hpp>

#include "polar/cli/commands.h"

namespace polar::cli {
void add_tokenizer_command(CLI::App& app) { (void)app; }
}  // namespace polar::cli
