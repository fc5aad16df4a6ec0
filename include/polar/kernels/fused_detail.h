// The fused paths behind polar/kernels/fused.h, callable on any device. On CUDA tensors they run
// the kernels; on CPU tensors they run a mirror of the kernels' algorithm in LibTorch ops and
// plain loops (the same closed-form backward, the same CSR occurrence map). The mirror exists so
// that the autograd plumbing and the backward formulas the kernels implement are tested on a
// CPU-only machine; production code calls fused.h, which picks kernel or reference.
#pragma once

#include <torch/types.h>

#include "polar/loss/polar_loss.h"

namespace polar::kernels::detail {

torch::Tensor reward_head_fused(const torch::Tensor& hidden, const torch::Tensor& idx,
                                const torch::Tensor& norm_weight, const torch::Tensor& head_weight,
                                double eps);

PairLoss pair_loss_grouped_fused(const torch::Tensor& rewards, const torch::Tensor& pos_index,
                                 const torch::Tensor& neg_offsets, const torch::Tensor& neg_index,
                                 double global_pairs, const LossOptions& options);

// Where each reward occurs, for the deterministic backward: entries (G + P) lists occurrence ids
// grouped by reward in increasing id order (id g < G: positive of group g; id G + p: negative of
// pair p) and offsets (N + 1) delimits each reward's run. Stable sort, so the order is fixed.
struct OccurrenceMap {
  torch::Tensor entries;  // (G + P) int64
  torch::Tensor offsets;  // (N + 1) int64
};
OccurrenceMap occurrence_map(const torch::Tensor& pos_index, const torch::Tensor& neg_index, int64_t N);

}  // namespace polar::kernels::detail
