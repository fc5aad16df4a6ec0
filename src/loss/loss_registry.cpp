// The loss registry (loss_registry.h): the pairwise Bradley-Terry loss and the listwise softmax
// loss over each group's K negatives.
#include "polar/loss/loss_registry.h"

#include <torch/torch.h>

#include <limits>

#include "loss_stats.h"
#include "polar/common/error.h"
#include "polar/data/batch.h"

namespace polar {

using torch::Tensor;

namespace {

PairLoss pairwise(const Tensor& rewards, const PackedBatch& batch, const LossDivisors& divisors,
                  const LossOptions& options, bool fused) {
  return pair_loss(rewards, batch, divisors.pairs, options, fused);
}

PairLoss listwise(const Tensor& rewards, const PackedBatch& batch, const LossDivisors& divisors,
                  const LossOptions& options, bool /*fused: no kernel yet*/) {
  return listwise_loss(rewards, batch.pair_pos, batch.pair_neg, batch.pos_index, divisors, options);
}

struct LossEntry {
  LossType type;
  PairLoss (*fn)(const Tensor&, const PackedBatch&, const LossDivisors&, const LossOptions&, bool);
  bool per_group;  // averages over groups (else over pairs)
};

constexpr LossEntry kLosses[] = {
    {LossType::Pairwise, pairwise, false},
    {LossType::Listwise, listwise, true},
};

const LossEntry& entry(LossType type) {
  for (const LossEntry& e : kLosses)
    if (e.type == type) return e;
  throw Error(std::string("loss.type ") + choice_name(type) + " has no entry in kLosses");
}

}  // namespace

PairLoss compute_loss(const Tensor& rewards, const PackedBatch& batch, const LossDivisors& divisors,
                      const LossOptions& options, bool fused) {
  return entry(options.type).fn(rewards, batch, divisors, options, fused);
}

double loss_divisor(const LossOptions& options, const LossDivisors& divisors) {
  return entry(options.type).per_group ? divisors.groups : divisors.pairs;
}

PairLoss listwise_loss(const Tensor& rewards, const Tensor& pair_pos, const Tensor& pair_neg,
                       const Tensor& pos_index, const LossDivisors& divisors,
                       const LossOptions& options) {
  POLAR_CHECK(rewards.defined() && rewards.dim() == 1 && rewards.is_floating_point(),
              "listwise_loss: rewards must be a 1-D floating tensor");
  POLAR_CHECK(pair_pos.defined() && pair_neg.defined() && pos_index.defined() &&
                  pair_pos.dim() == 1 && pair_neg.dim() == 1 && pos_index.dim() == 1 &&
                  pair_pos.size(0) == pair_neg.size(0),
              "listwise_loss: pair_pos, pair_neg (P) and pos_index (G) must be 1-D");
  POLAR_CHECK(divisors.groups > 0, "listwise_loss: divisors.groups must be > 0, got ",
              divisors.groups);
  const int64_t N = rewards.size(0);
  if (pair_pos.numel() > 0 && pair_pos.is_cpu()) {
    const int64_t lo = std::min({pair_pos.min().item<int64_t>(), pair_neg.min().item<int64_t>(),
                                 pos_index.min().item<int64_t>()});
    const int64_t hi = std::max({pair_pos.max().item<int64_t>(), pair_neg.max().item<int64_t>(),
                                 pos_index.max().item<int64_t>()});
    POLAR_CHECK(lo >= 0 && hi < N, "listwise_loss: index out of range [0, ", N, "): min ", lo,
                ", max ", hi);
  }
  // fp32 at least, so bf16 rewards do not lose the small differences the loss is made of.
  const auto compute = rewards.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  const Tensor r = rewards.to(compute);
  const Tensor pos = pair_pos.to(r.device(), torch::kLong);
  const Tensor groups = pos_index.to(r.device(), torch::kLong);
  const Tensor r_pos = r.index_select(0, pos);                                    // (P)
  const Tensor r_neg = r.index_select(0, pair_neg.to(r.device(), torch::kLong));  // (P)
  // The pairwise margin term, as pair_loss_reference writes it, so that K = 1 is exact.
  const Tensor x = r_pos - r_neg - options.margin;  // (P)
  // Per group, log(1 + sum_k e^-x_k) = softplus(LSE_k(-x_k)); the LSE shifted by the group's
  // maximum (a constant for autograd), kept in length-N buffers indexed by the positive.
  const Tensor shift =
      torch::full({N}, -std::numeric_limits<double>::infinity(), x.options())
          .scatter_reduce(0, pos, -x.detach(), "amax", /*include_self=*/false);  // (N)
  const Tensor sums = torch::zeros({N}, x.options())
                          .index_add(0, pos, torch::exp(-x - shift.index_select(0, pos)));  // (N)
  const Tensor lse = shift.index_select(0, groups) + torch::log(sums.index_select(0, groups));
  Tensor per_group = -torch::log_sigmoid(-lse);  // (G)
  // The penalties per pair, summed into their group in the order pair_loss_reference adds them.
  const auto add_per_pair = [&](const Tensor& per_pair) {
    per_group = per_group +
                torch::zeros({N}, x.options()).index_add(0, pos, per_pair).index_select(0, groups);
  };
  if (options.center_coef != 0.0) add_per_pair(options.center_coef * (r_pos + r_neg).square());
  if (options.reward_l2 != 0.0)
    add_per_pair(0.5 * options.reward_l2 * (r_pos.square() + r_neg.square()));
  const Tensor sum = per_group.sum();

  return loss_detail::make_pair_loss(sum, divisors.groups, pair_pos.size(0), r_pos, r_neg);
}

}  // namespace polar
