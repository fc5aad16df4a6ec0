// The plain reference of block causal attention for the block-attention tests: each block through
// SDPA over its keys with an explicit bottom-right causal mask, on the expanded kv heads.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace polar::testutil {

// q (Nq, Hq, D), k/v (Nk, Hkv, D); block i has q_lens[i] queries and k_lens[i] keys, in order.
inline torch::Tensor dense_blocks(const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v, const std::vector<int64_t>& q_lens,
                                  const std::vector<int64_t>& k_lens) {
  const int64_t rep = q.size(1) / k.size(1);
  std::vector<torch::Tensor> outs;
  int64_t q0 = 0, k0 = 0;
  for (size_t i = 0; i < q_lens.size(); ++i) {
    const int64_t lq = q_lens[i], lk = k_lens[i];
    if (lq > 0) {
      const torch::Tensor qb = q.narrow(0, q0, lq).transpose(0, 1);  // (Hq, lq, D)
      const torch::Tensor kb = k.narrow(0, k0, lk).transpose(0, 1).repeat_interleave(rep, 0);
      const torch::Tensor vb = v.narrow(0, k0, lk).transpose(0, 1).repeat_interleave(rep, 0);
      const torch::Tensor allowed =
          torch::arange(lk).unsqueeze(0) <= (torch::arange(lq) + (lk - lq)).unsqueeze(1);
      outs.push_back(torch::scaled_dot_product_attention(qb, kb, vb, allowed).transpose(0, 1));
    }
    q0 += lq;
    k0 += lk;
  }
  return torch::cat(outs, 0);
}

}  // namespace polar::testutil
