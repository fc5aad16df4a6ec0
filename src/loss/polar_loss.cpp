// The POLAR pair loss in plain LibTorch ops (see polar_loss.h); the reference for the kernels.
#include "polar/loss/polar_loss.h"

#include "polar/common/error.h"

namespace polar {

PairLoss polar_pair_loss(const torch::Tensor& rewards, const torch::Tensor& pair_pos,
                         const torch::Tensor& pair_neg, double global_pairs, const LossOptions& options) {
  POLAR_CHECK(rewards.defined() && rewards.dim() == 1 && rewards.is_floating_point(),
              "polar_pair_loss: rewards must be a 1-D floating tensor");
  POLAR_CHECK(pair_pos.defined() && pair_neg.defined() && pair_pos.dim() == 1 && pair_neg.dim() == 1 &&
                  pair_pos.scalar_type() == torch::kInt64 && pair_neg.scalar_type() == torch::kInt64,
              "polar_pair_loss: pair_pos and pair_neg must be 1-D int64 tensors");
  POLAR_CHECK(pair_pos.size(0) == pair_neg.size(0), "polar_pair_loss: ", pair_pos.size(0), " positives but ",
              pair_neg.size(0), " negatives");
  POLAR_CHECK(global_pairs > 0, "polar_pair_loss: global_pairs must be > 0, got ", global_pairs);
  const int64_t n_pairs = pair_pos.size(0);
  const int64_t n_rewards = rewards.size(0);
  if (n_pairs > 0) {
    // Out-of-range indices would be a device assert on CUDA; name them here instead.
    const auto lo = torch::minimum(pair_pos.min(), pair_neg.min()).item<int64_t>();
    const auto hi = torch::maximum(pair_pos.max(), pair_neg.max()).item<int64_t>();
    POLAR_CHECK(lo >= 0 && hi < n_rewards, "polar_pair_loss: pair index out of range [0, ", n_rewards,
                "): min ", lo, ", max ", hi);
  }

  // fp32 at least, so bf16 rewards do not lose the small differences the loss is made of.
  const auto compute = rewards.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  const torch::Tensor r = rewards.to(compute);
  const torch::Tensor r_pos = r.index_select(0, pair_pos.to(r.device()));  // (P)
  const torch::Tensor r_neg = r.index_select(0, pair_neg.to(r.device()));  // (P)

  // -log sigmoid(d) through log_sigmoid: no overflow for large |d|.
  torch::Tensor per_pair = -torch::log_sigmoid(r_pos - r_neg - options.margin);  // (P)
  if (options.center_coef != 0.0) per_pair = per_pair + options.center_coef * (r_pos + r_neg).square();
  if (options.reward_l2 != 0.0) per_pair = per_pair + 0.5 * options.reward_l2 * (r_pos.square() + r_neg.square());
  const torch::Tensor sum = per_pair.sum();

  PairLoss out;
  out.loss = sum / global_pairs;
  out.n_pairs = n_pairs;
  if (n_pairs > 0) {
    torch::NoGradGuard no_grad;
    out.loss_sum = sum.item<double>();
    out.n_correct = (r_pos > r_neg).sum().item<int64_t>();
    out.n_ties = (r_pos == r_neg).sum().item<int64_t>();
  }
  return out;
}

}  // namespace polar
