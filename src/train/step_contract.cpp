#include "polar/train/step_contract.h"

#include <vector>

#include "polar/common/error.h"
#include "polar/dist/dist.h"
#include "polar/train/optimizer.h"

namespace polar {

GradientStep::GradientStep(TrainOptimizer& optimizer, dist::Context& ctx) : ctx_(ctx) {
  optimizer.zero_grad();
}

void GradientStep::before_backward(bool last_micro_batch) {
  POLAR_CHECK(!finished_, "GradientStep: a backward after finish()");
  ctx_.begin_micro_step(last_micro_batch);
}

void GradientStep::finish(int64_t rounds) {
  POLAR_CHECK(!finished_, "GradientStep: finish() called twice");
  finished_ = true;
  ctx_.finish_step(rounds);
}

void StepTotals::all_reduce(dist::Context& ctx) {
  std::vector<double> v{loss_sum, correct, ties, tokens, stop_requested ? 1.0 : 0.0};
  ctx.all_reduce_sum(v);
  loss_sum = v[0];
  correct = v[1];
  ties = v[2];
  tokens = v[3];
  stop_requested = v[4] > 0;
}

}  // namespace polar
