// Fused CUDA paths with CPU references. Each function dispatches: CUDA tensors and the kernels
// compiled in (POLAR_WITH_CUDA) -> the kernel; otherwise -> the plain LibTorch reference.
// Both are torch::autograd::Functions, so gradients flow either way; checkpoints are the same.
#pragma once

#include <torch/types.h>

#include "polar/loss/polar_loss.h"

namespace polar::kernels {

bool cuda_kernels_available();  // compiled in and a CUDA device present

// rewards (N) = (rmsnorm(hidden[idx]) * norm_weight) @ head_weight^T, computed in fp32.
// hidden (T_total, H) fp32 or bf16; idx (N) int64; norm_weight (H); head_weight (1, H).
torch::Tensor reward_head(const torch::Tensor& hidden, const torch::Tensor& idx,
                          const torch::Tensor& norm_weight, const torch::Tensor& head_weight,
                          double eps, bool use_kernel = true);
torch::Tensor reward_head_reference(const torch::Tensor& hidden, const torch::Tensor& idx,
                                    const torch::Tensor& norm_weight, const torch::Tensor& head_weight,
                                    double eps);

// The POLAR pair loss (see polar_loss.h) over groups given as CSR: group g has positive
// pos_index[g] and negatives neg_index[neg_offsets[g] .. neg_offsets[g+1]). Same value and
// gradient as polar_pair_loss over the expanded pairs; deterministic.
PairLoss pair_loss_grouped(const torch::Tensor& rewards, const torch::Tensor& pos_index,
                           const torch::Tensor& neg_offsets, const torch::Tensor& neg_index,
                           double global_pairs, const LossOptions& options, bool use_kernel = true);

// Packed variable-length causal attention with flash attention (CUDA, bf16/fp16).
// q (T_total, Hq, D), k/v (T_total, Hkv, D), cu_seqlens (S+1) int32. Returns (T_total, Hq, D).
bool varlen_attention_available(const torch::Tensor& q);
torch::Tensor varlen_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& cu_seqlens, int64_t max_seqlen);

// Block causal attention: block b has queries q[cu_seqlens_q[b], cu_seqlens_q[b+1]) and keys
// k/v[cu_seqlens_k[b], cu_seqlens_k[b+1]), at least as many keys as queries, and the causal mask
// aligned to the bottom right (query i of lq sees keys j <= lk - lq + i). A shared-prefix
// candidate is a block with queries = its tokens and keys = [prefix ; its tokens]. With
// cu_seqlens_q == cu_seqlens_k this is the packed varlen attention above.
// q (Nq, Hq, D), k/v (Nk, Hkv, D) -> (Nq, Hq, D).
torch::Tensor varlen_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& cu_seqlens_q, const torch::Tensor& cu_seqlens_k,
                               int64_t max_seqlen_q, int64_t max_seqlen_k);
// The same on any device and dtype (the CPU path), computed block by block with autograd.
torch::Tensor varlen_attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const torch::Tensor& cu_seqlens_q, const torch::Tensor& cu_seqlens_k);

}  // namespace polar::kernels
