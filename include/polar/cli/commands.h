// The subcommands of the `polar` CLI; each lives next to the module it drives.
#pragma once

namespace CLI {
class App;
}

namespace polar::cli {

void add_tokenizer_command(CLI::App& app);  // src/cli/tokenizer_command.cpp
void add_data_command(CLI::App& app);       // src/cli/data_command.cpp
void add_train_command(CLI::App& app);      // src/cli/train_command.cpp
void add_eval_commands(CLI::App& app);      // src/cli/eval_command.cpp: eval, score
void add_bench_command(CLI::App& app);      // src/cli/bench_command.cpp
void add_interop_commands(CLI::App& app);   // src/cli/interop_command.cpp: import, export
void add_sample_command(CLI::App& app);     // src/cli/sample_command.cpp
void add_serve_command(CLI::App& app);      // src/cli/serve_command.cpp
void add_plan_command(CLI::App& app);       // src/cli/plan_command.cpp
void add_config_command(CLI::App& app);     // src/cli/config_command.cpp

}  // namespace polar::cli
