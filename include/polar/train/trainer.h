// Trainer: runs `polar train` — one process or one rank of a data-parallel group.
// The optimizer step itself is Trainer::train_step (batch -> forward -> rewards -> loss ->
// backward -> sync -> clip -> step); set-up, logging, eval and checkpoints live around it.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "polar/config/train_config.h"
#include "polar/train/run_setup.h"

namespace polar {

struct StepStats {
  double loss = 0;  // sum over the step's pairs / global pairs (all ranks)
  double accuracy = 0;
  double grad_norm = 0;
  double lr = 0;
  int64_t pairs = 0;
  int64_t tokens = 0;
  double step_seconds = 0;
  double comm_exposed_seconds = 0;
  double comm_total_seconds = 0;
  bool skipped = false;  // non-finite loss or gradient
};

struct EvalStats {
  double loss = 0;
  double accuracy = 0;
  int64_t pairs = 0;
};

class Trainer {
 public:
  // resume: continue from the latest checkpoint under run.output_dir (also when the launcher
  // says this is a restart: TORCHELASTIC_RESTART_COUNT > 0).
  // make_setup replaces prepare_run (the benchmark trains on random data this way).
  using SetupFn = std::function<RunSetup(TrainConfig&, const torch::Device&,
                                         const std::optional<std::string>&)>;
  Trainer(TrainConfig config, bool resume, SetupFn make_setup = nullptr);
  ~Trainer();
  // Returns the process exit code: 0 when done, 128+signal when stopped by SIGINT/SIGTERM
  // (after saving a checkpoint).
  int run();

  StepStats train_step(int64_t step);
  EvalStats evaluate();

  struct State;  // public so that the file's helpers can take it; defined in trainer.cpp

 private:
  // Evaluates every eval.every steps and at the end; adds eval_loss and eval_accuracy to `rec`.
  void evaluate_into(nlohmann::json& rec, bool last);

  std::unique_ptr<State> s_;
};

// Installs SIGINT/SIGTERM handlers that ask running trainers to checkpoint and stop.
void install_stop_signal_handlers();
// The signal those handlers received, or 0.
int pending_stop_signal();

}  // namespace polar
