// Packed variable-length causal attention: flash attention on CUDA (bf16/fp16) and the plain
// LibTorch reference computed block by block (any device and dtype). Both carry autograd.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace polar::kernels {

// Whether varlen_attention can take q: CUDA bf16/fp16 (T, Hq, D), D a multiple of 8 up to 256,
// an sm_80+ GPU and the CUDA build.
bool varlen_attention_available(const torch::Tensor& q);

// q (T_total, Hq, D), k/v (T_total, Hkv, D), cu_seqlens (S+1) int32. Returns (T_total, Hq, D).
torch::Tensor varlen_attention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& cu_seqlens,
                               int64_t max_seqlen);

// Block causal attention: block b has queries q[cu_seqlens_q[b], cu_seqlens_q[b+1]) and keys
// k/v[cu_seqlens_k[b], cu_seqlens_k[b+1]), at least as many keys as queries, and the causal mask
// aligned to the bottom right (query i of lq sees keys j <= lk - lq + i). A shared-prefix
// candidate is a block with queries = its tokens and keys = [prefix ; its tokens]. With
// cu_seqlens_q == cu_seqlens_k this is the packed varlen attention above.
// q (Nq, Hq, D), k/v (Nk, Hkv, D) -> (Nq, Hq, D).
torch::Tensor varlen_attention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& cu_seqlens_q,
                               const torch::Tensor& cu_seqlens_k, int64_t max_seqlen_q,
                               int64_t max_seqlen_k);

// The same on any device and dtype, computed block by block with autograd: the plain reference.
torch::Tensor varlen_attention_reference(const torch::Tensor& q, const torch::Tensor& k,
                                         const torch::Tensor& v, const torch::Tensor& cu_seqlens_q,
                                         const torch::Tensor& cu_seqlens_k);

// The same through ATen's fused CPU attention over batches of length-bucketed, padded blocks
// (the CPU path: a few fused calls per layer instead of ops per block).
torch::Tensor varlen_attention_padded(const torch::Tensor& q, const torch::Tensor& k,
                                      const torch::Tensor& v, const torch::Tensor& cu_seqlens_q,
                                      const torch::Tensor& cu_seqlens_k);

// The same with the keys read through key_index (Nk') int64: key slot j of the blocks is row
// key_index[j] of k/v (an undefined key_index: row j). Candidates whose prefix slots name the same
// rows form a group: the group's queries attend to those rows in one call, without a copy of the
// prefix per candidate (data/attention_layout.h's key_index gives exactly that).
torch::Tensor varlen_attention_padded(const torch::Tensor& q, const torch::Tensor& k,
                                      const torch::Tensor& v, const torch::Tensor& cu_seqlens_q,
                                      const torch::Tensor& cu_seqlens_k,
                                      const torch::Tensor& key_index);

}  // namespace polar::kernels
