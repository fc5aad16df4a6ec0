// Internals of the kernels' autograd Functions, exposed to the tests only: the reward-head
// Function callable on any device (on CUDA tensors the kernel; on CPU tensors a mirror of the
// kernel's algorithm in LibTorch ops, the same closed-form backward) and the occurrence map
// of the grouped loss's deterministic backward. The mirror exists so that the autograd
// plumbing and the backward formulas the kernels implement are tested on a CPU-only machine;
// production code calls reward_head (polar/kernels/reward_head.h), which picks kernel or
// reference.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace polar::kernels::detail {

torch::Tensor reward_head_fused(const torch::Tensor& hidden, const torch::Tensor& idx,
                                const torch::Tensor& norm_weight, const torch::Tensor& head_weight,
                                double eps);

// Where each reward occurs, for the deterministic backward: entries (G + P) lists occurrence ids
// grouped by reward in increasing id order (id g < G: positive of group g; id G + p: negative of
// pair p) and offsets (N + 1) delimits each reward's run. Stable sort, so the order is fixed.
struct OccurrenceMap {
  torch::Tensor entries;  // (G + P) int64
  torch::Tensor offsets;  // (N + 1) int64
};
OccurrenceMap occurrence_map(const torch::Tensor& pos_index, const torch::Tensor& neg_index,
                             int64_t N);

}  // namespace polar::kernels::detail
