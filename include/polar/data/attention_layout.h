// Which keys each packed token attends to, as blocks for varlen attention. A row holds
// sequences as contiguous runs of one segment id (1..S per row, 0 = padding). A token whose
// context is a segment id c != its own also sees every token of segment c, which must come
// earlier in the same row: a shared-prefix candidate sees its group's prefix. Keys are
// causal within the token's own segment.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace polar {

struct AttentionLayout {
  torch::Tensor token_index;  // (Nq) int64: flat indices into B*T of the real tokens, row-major
  torch::Tensor cu_q, cu_k;   // (S+1) int64: query / key ranges of each block (one per run)
  torch::Tensor key_index;    // (Nk) int64 into the Nq real tokens; undefined when keys == queries
  int64_t max_q = 0, max_k = 0;
  bool all_tokens = false;     // no padding: token_index is 0..B*T-1
  int64_t rows = 0, cols = 0;  // the (B, T) it was computed for
};

// segments (B, T) int64; context (B, T) int64 or undefined (no shared prefixes). CPU tensors.
// Throws polar::Error on a segment split into several runs, a context that changes inside a
// run, or a context naming no earlier segment of the row.
AttentionLayout attention_layout(const torch::Tensor& segments, const torch::Tensor& context);

// The same as a dense mask (B, 1, T, T) bool, true where a query may attend to a key; padding
// attends to itself only, so no row is empty. For the masked (Math) attention path.
torch::Tensor attention_mask(const torch::Tensor& segments, const torch::Tensor& context);

}  // namespace polar
