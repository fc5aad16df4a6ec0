// Packed batches: several sequences per row, each attending only to itself, positions
// restarting at 0 for each sequence. A batch holds whole groups, so every pair is inside it.
// With shared prefixes a group is packed as its prefix once and then each candidate: the
// candidate's positions continue from the prefix length, and it attends to the whole prefix
// (its context) and causally to its own tokens, never to another candidate. Rewards, and so
// the loss and every gradient, are those of the separate sequences prefix ++ candidate.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "polar/data/attention_layout.h"
#include "polar/data/shards.h"

namespace polar {

struct PackedBatch {
  torch::Tensor tokens;         // (B, T) int64, padding = pad id
  torch::Tensor positions;      // (B, T) int64, restart at 0 per sequence; 0 on padding
  torch::Tensor segments;       // (B, T) int64, 1..S per row for sequences, 0 on padding
  torch::Tensor context;        // (B, T) int64, a candidate's prefix segment, else 0; shared only
  torch::Tensor reward_index;   // (N) int64, flat index into B*T of each sequence's reward token
  torch::Tensor pair_pos;       // (P) int64, index into the N rewards of the positive/chosen
  torch::Tensor pair_neg;       // (P) int64, index into the N rewards of the negative/rejected
  torch::Tensor pair_category;  // (P) int64, category id of the pair's group
  // The same pairs as groups (CSR, for the grouped loss kernel): group g's positive is
  // pos_index[g] and its negatives pair_neg[neg_offsets[g] .. neg_offsets[g+1]).
  torch::Tensor pos_index;    // (G) int64, index into the N rewards
  torch::Tensor neg_offsets;  // (G+1) int64, into pair_neg
  AttentionLayout layout;     // the rows' attention blocks (token_index, cu_q, cu_k, key_index)
  // One int64 buffer holding every index tensor above (views of it), so a batch moves to the
  // device in one copy; pinned on the host when packed for a CUDA device. Undefined for a
  // batch assembled by hand (to_device then copies tensor by tensor).
  torch::Tensor storage;
  int64_t n_sequences = 0;
  int64_t n_pairs = 0;
  int64_t n_tokens = 0;  // real (non-padding) tokens, i.e. the tokens computed
};

struct PackOptions {
  int64_t row_tokens = 2048;  // capacity of one row; a longer sequence gets a row of its own
  int32_t pad_id = 0;
  bool shared_prefix = false;  // each group's prefix once, shared by its candidates
  bool pinned = false;         // the batch's buffer in pinned host memory (for a CUDA copy)
};

// Tokens a group puts into a batch: prefix + candidate per candidate, or with a shared prefix
// the prefix once plus every candidate.
int64_t group_tokens(const GroupRef& group, bool shared_prefix);

// Packs the sequences of `groups` (sequence = prefix ++ candidate; with shared_prefix, a whole
// group) into rows, first-fit decreasing by length; the result does not depend on the order
// rows are filled in except through layout, and rewards come back in group order: group 0
// cand 0, group 0 cand 1, ... A unit longer than a row gets a row of its own. Everything the
// device needs (the attention layout and the loss's group CSR included) is computed here, in
// one host buffer (PackedBatch::storage).
PackedBatch pack_groups(const std::vector<GroupRef>& groups, const PackOptions& options);

// The batch's index tensors (ids, positions, segments, context, reward and pair indices, group
// CSR, attention layout; undefined ones included), for moving them together.
std::vector<torch::Tensor*> index_tensors(PackedBatch& batch);

// Splits groups [0, n) into consecutive micro-batches of at most `token_budget` computed tokens
// each (group_tokens; a group larger than the budget forms a micro-batch alone). Returns index
// ranges.
std::vector<std::pair<int64_t, int64_t>> split_micro_batches(const std::vector<GroupRef>& groups,
                                                             int64_t token_budget,
                                                             bool shared_prefix = false);

}  // namespace polar
