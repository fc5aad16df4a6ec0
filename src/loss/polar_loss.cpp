// The POLAR pair loss (see polar_loss.h): the LibTorch reference, and the one dispatch between
// it and the grouped CUDA kernel.
#include "polar/loss/polar_loss.h"

#include <torch/torch.h>

#include "loss_stats.h"
#include "polar/common/error.h"
#include "polar/data/batch.h"
#include "polar/kernels/cuda.h"
#include "polar/kernels/pair_loss.h"

namespace polar {

using torch::Tensor;

namespace {

bool kernel_takes(const Tensor& rewards, const LossOptions& options) {
  const auto t = rewards.scalar_type();
  // The kernel has margin and centering only; the reward-scale penalty takes the reference.
  return options.reward_l2 == 0.0 && rewards.is_cuda() && kernels::cuda_kernels_available() &&
         (t == torch::kFloat || t == torch::kDouble || t == torch::kBFloat16 || t == torch::kHalf);
}

PairLoss from_kernel(const kernels::GroupedPairLoss& out, int64_t n_pairs) {
  PairLoss result;
  result.loss = out.loss;
  result.stats = out.stats;
  result.n_pairs = n_pairs;
  return result;
}

// Full CSR validation on the host (the kernel checks on the device and counts n_invalid).
void validate_csr(const Tensor& rewards, const Tensor& pos, const Tensor& offsets,
                  const Tensor& neg) {
  POLAR_CHECK(rewards.defined() && rewards.dim() == 1, "pair_loss: rewards must be a 1-D tensor");
  POLAR_CHECK(pos.defined() && offsets.defined() && neg.defined() && pos.dim() == 1 &&
                  offsets.dim() == 1 && neg.dim() == 1 && offsets.size(0) == pos.size(0) + 1,
              "pair_loss: pos_index (G), neg_offsets (G + 1) and neg_index (P) must be 1-D, got ",
              pos.sizes(), ", ", offsets.sizes(), " and ", neg.sizes());
  const int64_t N = rewards.size(0), G = pos.size(0), P = neg.size(0);
  const Tensor off = offsets.to(torch::kCPU, torch::kLong);
  const auto* o = off.data_ptr<int64_t>();
  POLAR_CHECK(o[0] == 0, "pair_loss: neg_offsets[0] must be 0, got ", o[0]);
  for (int64_t g = 0; g < G; ++g) {
    POLAR_CHECK(o[g + 1] > o[g], "pair_loss: group ", g,
                " must have K >= 1 negatives (neg_offsets[", g, "] = ", o[g], ", neg_offsets[",
                g + 1, "] = ", o[g + 1], ")");
  }
  POLAR_CHECK(o[G] == P, "pair_loss: neg_offsets[G] = ", o[G], " but neg_index has ", P,
              " entries");
  for (const Tensor* t : {&pos, &neg}) {
    if (t->numel() == 0) continue;
    const int64_t lo = t->min().item<int64_t>(), hi = t->max().item<int64_t>();
    POLAR_CHECK(lo >= 0 && hi < N, "pair_loss: ", t == &pos ? "pos_index" : "neg_index",
                " entry out of range [0, ", N, "): ", lo < 0 ? lo : hi);
  }
}

}  // namespace

PairCounts read_pair_counts(const Tensor& stats) {
  POLAR_CHECK(stats.defined() && stats.numel() == 4, "read_pair_counts: stats must have 4 entries");
  const Tensor host = stats.detach().to(torch::kCPU, torch::kDouble).contiguous();
  const double* s = host.data_ptr<double>();
  POLAR_CHECK(s[3] == 0, "pair_loss: ", static_cast<int64_t>(s[3]),
              " invalid groups or indices (neg_offsets must start at 0, grow by >= 1 per group and "
              "end at P; "
              "indices must lie in [0, N))");
  return {s[0], static_cast<int64_t>(s[1]), static_cast<int64_t>(s[2])};
}

double PairLoss::loss_sum() const { return read_pair_counts(stats).loss_sum; }
int64_t PairLoss::n_correct() const { return read_pair_counts(stats).n_correct; }
int64_t PairLoss::n_ties() const { return read_pair_counts(stats).n_ties; }

PairLoss pair_loss(const Tensor& rewards, const PackedBatch& batch, double global_pairs,
                   const LossOptions& options, bool fused) {
  if (fused && kernel_takes(rewards, options)) {
    POLAR_CHECK(batch.pos_index.defined() && batch.neg_offsets.defined(),
                "pair_loss: the packed batch has no group CSR (pos_index, neg_offsets)");
    return from_kernel(
        kernels::pair_loss_grouped(rewards, batch.pos_index, batch.neg_offsets, batch.pair_neg,
                                   global_pairs, options.margin, options.center_coef),
        batch.n_pairs);
  }
  return pair_loss_reference(rewards, batch.pair_pos, batch.pair_neg, global_pairs, options);
}

PairLoss pair_loss(const Tensor& rewards, const Tensor& pos_index, const Tensor& neg_offsets,
                   const Tensor& neg_index, double global_pairs, const LossOptions& options,
                   bool fused) {
  if (fused && kernel_takes(rewards, options)) {
    return from_kernel(
        kernels::pair_loss_grouped(rewards, pos_index, neg_offsets, neg_index, global_pairs,
                                   options.margin, options.center_coef),
        neg_index.size(0));
  }
  validate_csr(rewards, pos_index, neg_offsets, neg_index);
  const int64_t G = pos_index.size(0), P = neg_index.size(0);
  const Tensor offsets = neg_offsets.to(torch::kLong);
  const Tensor counts = offsets.slice(0, 1) - offsets.slice(0, 0, G);                  // (G) = K_g
  const Tensor pair_pos = pos_index.to(torch::kLong).repeat_interleave(counts, 0, P);  // (P)
  return pair_loss_reference(rewards, pair_pos, neg_index.to(torch::kLong), global_pairs, options);
}

PairLoss pair_loss_reference(const Tensor& rewards, const Tensor& pair_pos, const Tensor& pair_neg,
                             double global_pairs, const LossOptions& options) {
  POLAR_CHECK(rewards.defined() && rewards.dim() == 1 && rewards.is_floating_point(),
              "pair_loss_reference: rewards must be a 1-D floating tensor");
  POLAR_CHECK(pair_pos.defined() && pair_neg.defined() && pair_pos.dim() == 1 &&
                  pair_neg.dim() == 1 && pair_pos.scalar_type() == torch::kInt64 &&
                  pair_neg.scalar_type() == torch::kInt64,
              "pair_loss_reference: pair_pos and pair_neg must be 1-D int64 tensors");
  POLAR_CHECK(pair_pos.size(0) == pair_neg.size(0), "pair_loss_reference: ", pair_pos.size(0),
              " positives but ", pair_neg.size(0), " negatives");
  POLAR_CHECK(global_pairs > 0, "pair_loss_reference: global_pairs must be > 0, got ",
              global_pairs);
  const int64_t n_pairs = pair_pos.size(0);
  const int64_t n_rewards = rewards.size(0);
  if (n_pairs > 0 && pair_pos.is_cpu() && pair_neg.is_cpu()) {
    // Out-of-range indices would be a device assert on CUDA; name them here instead.
    const auto lo = torch::minimum(pair_pos.min(), pair_neg.min()).item<int64_t>();
    const auto hi = torch::maximum(pair_pos.max(), pair_neg.max()).item<int64_t>();
    POLAR_CHECK(lo >= 0 && hi < n_rewards, "pair_loss_reference: pair index out of range [0, ",
                n_rewards, "): min ", lo, ", max ", hi);
  }

  // fp32 at least, so bf16 rewards do not lose the small differences the loss is made of.
  const auto compute = rewards.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  const Tensor r = rewards.to(compute);
  const Tensor r_pos = r.index_select(0, pair_pos.to(r.device()));  // (P)
  const Tensor r_neg = r.index_select(0, pair_neg.to(r.device()));  // (P)

  // -log sigmoid(d) through log_sigmoid: no overflow for large |d|.
  Tensor per_pair = -torch::log_sigmoid(r_pos - r_neg - options.margin);  // (P)
  if (options.center_coef != 0.0)
    per_pair = per_pair + options.center_coef * (r_pos + r_neg).square();
  if (options.reward_l2 != 0.0)
    per_pair = per_pair + 0.5 * options.reward_l2 * (r_pos.square() + r_neg.square());
  const Tensor sum = per_pair.sum();

  return loss_detail::make_pair_loss(sum, global_pairs, n_pairs, r_pos, r_neg);
}

}  // namespace polar
