// Packed batches: several sequences per row, each attending only to itself, positions
// restarting at 0 for each sequence. A batch holds whole groups, so every pair is inside it.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "polar/data/shards.h"

namespace polar {

struct PackedBatch {
  torch::Tensor tokens;        // (B, T) int64, padding = pad id
  torch::Tensor positions;     // (B, T) int64, restart at 0 per sequence; 0 on padding
  torch::Tensor segments;      // (B, T) int64, 1..S per row for sequences, 0 on padding
  torch::Tensor reward_index;  // (N) int64, flat index into B*T of each sequence's reward token
  torch::Tensor pair_pos;      // (P) int64, index into the N rewards of the positive/chosen
  torch::Tensor pair_neg;      // (P) int64, index into the N rewards of the negative/rejected
  torch::Tensor pair_category; // (P) int64, category id of the pair's group
  int64_t n_sequences = 0;
  int64_t n_pairs = 0;
  int64_t n_tokens = 0;        // real (non-padding) tokens
};

struct PackOptions {
  int64_t row_tokens = 2048;  // capacity of one row; a longer sequence gets a row of its own
  int32_t pad_id = 0;
};

// Packs the sequences of `groups` (sequence = prefix ++ candidate) into rows, first-fit
// decreasing by length; the result does not depend on the order rows are filled in except
// through layout, and rewards come back in group order: group 0 cand 0, group 0 cand 1, ...
PackedBatch pack_groups(const std::vector<GroupRef>& groups, const PackOptions& options);

// Splits groups [0, n) into consecutive micro-batches of at most `token_budget` sequence tokens
// each (a group larger than the budget forms a micro-batch alone). Returns index ranges.
std::vector<std::pair<int64_t, int64_t>> split_micro_batches(const std::vector<GroupRef>& groups,
                                                             int64_t token_budget);

}  // namespace polar
