// The contracts of one optimizer step across data-parallel ranks, as types:
//  - GradientStep: the order the gradients are built and synchronised in, the same for DDP,
//    ZeRO-1 and ZeRO-2: construct (clears the gradients) -> before_backward(last) before each
//    micro-batch's backward -> finish(rounds) once, after the last backward.
//  - StepTotals: what the ranks sum at the end of a step (loss statistics, tokens, and whether
//    any rank was asked to stop), reduced in one collective.
#pragma once

#include <cstdint>

namespace polar {

class TrainOptimizer;
namespace dist {
class Context;
}

class GradientStep {
 public:
  // Clears the gradients (the optimizer's, and with ZeRO the shard's).
  GradientStep(TrainOptimizer& optimizer, dist::Context& ctx);
  // Before each micro-batch's backward; only the last one synchronises under DDP/ZeRO-1 (the
  // others accumulate locally); ZeRO-2 reduce-scatters every one.
  void before_backward(bool last_micro_batch);
  // After the last backward: waits for the communication and leaves the summed gradients (or
  // this rank's shard of them) for clip and step. `rounds`: the most micro-batches any rank had
  // this step (ZeRO-2 runs that many reduce-scatters on every rank; ignored otherwise).
  void finish(int64_t rounds);

 private:
  dist::Context& ctx_;
  bool finished_ = false;
};

struct StepTotals {
  double loss_sum = 0;          // the loss's undivided sum (divide by the loss's divisor)
  double correct = 0;           // pairs with r_pos > r_neg
  double ties = 0;              // pairs with r_pos == r_neg
  double tokens = 0;            // tokens computed
  bool stop_requested = false;  // any rank received SIGINT/SIGTERM
  // Sums every field over the ranks (stop_requested: any rank), in one collective.
  void all_reduce(dist::Context& ctx);
};

}  // namespace polar
