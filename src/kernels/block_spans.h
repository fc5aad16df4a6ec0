// The block structure both CPU block-attention paths read (the block-by-block reference and the
// padded fused path): argument checks and the blocks of cu_seqlens_q / cu_seqlens_k.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace polar::kernels {

// Block b: queries [q_begin, q_begin + q_len), keys [k_begin, k_begin + k_len), q_len <= k_len.
struct BlockSpan {
  int64_t q_begin, q_len, k_begin, k_len;
};

// q (Nq, Hq, D), k and v (Nk, Hkv, D) with Hkv dividing Hq, one dtype and device; `who` names
// the caller in the error.
void check_block_attention_inputs(const char* who, const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v);

// A cu_seqlens tensor as int64 values on the host.
std::vector<int64_t> cu_seqlens_values(const torch::Tensor& cu);

// The blocks with queries of cu_q / cu_k (both S + 1, from 0 to the token counts, no block with
// more queries than keys), in order; blocks without queries are dropped.
std::vector<BlockSpan> read_block_spans(const char* who, const std::vector<int64_t>& cu_q,
                                        const std::vector<int64_t>& cu_k, int64_t n_q, int64_t n_k);

}  // namespace polar::kernels
