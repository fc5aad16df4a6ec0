// Block causal attention computed block by block (the CPU path and the reference of the flash
// call): each block's queries attend only to the block's own keys, so the work is the sum of
// lq * lk over blocks rather than a dense mask over a whole packed row. Backward recomputes the
// probabilities block by block, so nothing of size lq * lk is kept between the passes.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>

#include "block_spans.h"
#include "polar/common/error.h"
#include "polar/kernels/attention.h"

namespace polar::kernels {

using torch::Tensor;

namespace {

using Block = BlockSpan;

std::vector<Block> read_blocks(const Tensor& cu_q, const Tensor& cu_k, int64_t n_q, int64_t n_k) {
  POLAR_CHECK(cu_q.dim() == 1 && cu_k.dim() == 1,
              "varlen_attention_reference: cu_seqlens_q and cu_seqlens_k must be 1-D, got ",
              cu_q.sizes(), " and ", cu_k.sizes());
  return read_block_spans("varlen_attention_reference", cu_seqlens_values(cu_q),
                          cu_seqlens_values(cu_k), n_q, n_k);
}

// Query i of lq sees key j of lk when j <= lk - lq + i (causal aligned to the bottom right).
Tensor blocked_keys(int64_t lq, int64_t lk, const torch::Device& device) {
  const auto opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
  return torch::arange(lk, opts).unsqueeze(0) >
         (torch::arange(lq, opts) + (lk - lq)).unsqueeze(1);  // (lq, lk)
}

// (l, Hq, D) -> (Hkv, rep * l, D): query head h reads kv head h / rep (HF repeat_kv), so the
// rep query heads of one kv head are stacked along the rows of one matmul.
Tensor heads_first(const Tensor& x, int64_t kv_heads) {
  const int64_t l = x.size(0), h = x.size(1), d = x.size(2);
  return x.view({l, kv_heads, h / kv_heads, d})
      .permute({1, 2, 0, 3})
      .reshape({kv_heads, h / kv_heads * l, d});
}

Tensor tokens_first(const Tensor& x, int64_t l) {  // inverse of heads_first
  const int64_t kv = x.size(0), rep = x.size(1) / l, d = x.size(2);
  return x.view({kv, rep, l, d}).permute({2, 0, 1, 3}).reshape({l, kv * rep, d});
}

struct BlockTensors {
  Tensor q, k, v;  // (Hkv, rep * lq, D), (Hkv, lk, D), (Hkv, lk, D)
  Tensor probs;    // (Hkv, rep * lq, lk)
};

BlockTensors block_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Block& b,
                           double scale) {
  BlockTensors t;
  const int64_t kv_heads = k.size(1);
  t.q = heads_first(q.narrow(0, b.q_begin, b.q_len), kv_heads);
  t.k = k.narrow(0, b.k_begin, b.k_len).permute({1, 0, 2});
  t.v = v.narrow(0, b.k_begin, b.k_len).permute({1, 0, 2});
  const int64_t rep = q.size(1) / kv_heads;
  Tensor scores = torch::matmul(t.q, t.k.transpose(1, 2)).mul_(scale);  // (Hkv, rep * lq, lk)
  scores.view({kv_heads, rep, b.q_len, b.k_len})
      .masked_fill_(blocked_keys(b.q_len, b.k_len, q.device()),
                    -std::numeric_limits<double>::infinity());
  t.probs = torch::softmax(scores, -1);
  return t;
}

// Runs fn(block) for every block; blocks write disjoint rows, so they may run in parallel
// (each then single-threaded) when there are enough of them to keep the threads busy.
template <typename Fn>
void for_each_block(const std::vector<Block>& blocks, const torch::Device& device, Fn fn) {
  const auto n = static_cast<int64_t>(blocks.size());
  if (device.is_cpu() && n >= 2 * at::get_num_threads()) {
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      torch::NoGradGuard no_grad;  // the gradients are written by hand; record nothing
      for (int64_t i = begin; i < end; ++i) fn(blocks[static_cast<size_t>(i)]);
    });
  } else {
    torch::NoGradGuard no_grad;
    for (const Block& b : blocks) fn(b);
  }
}

struct BlockAttention : torch::autograd::Function<BlockAttention> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& cu_q, const Tensor& cu_k) {
    const auto blocks = read_blocks(cu_q, cu_k, q.size(0), k.size(0));
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(2)));
    Tensor out = torch::zeros_like(q);  // (Nq, Hq, D); query rows of no block stay zero
    for_each_block(blocks, q.device(), [&](const Block& b) {
      const BlockTensors t = block_forward(q, k, v, b, scale);
      out.narrow(0, b.q_begin, b.q_len).copy_(tokens_first(torch::matmul(t.probs, t.v), b.q_len));
    });
    ctx->save_for_backward({q, k, v, cu_q, cu_k});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &q = saved[0], &k = saved[1], &v = saved[2];
    const auto blocks = read_blocks(saved[3], saved[4], q.size(0), k.size(0));
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(2)));
    const Tensor grad_out = grad_outputs[0].contiguous();
    Tensor dq = torch::zeros_like(q), dk = torch::zeros_like(k), dv = torch::zeros_like(v);
    for_each_block(blocks, q.device(), [&](const Block& b) {
      const BlockTensors t = block_forward(q, k, v, b, scale);
      const Tensor d_out =
          heads_first(grad_out.narrow(0, b.q_begin, b.q_len), k.size(1));  // (Hkv, rep*lq, D)
      const Tensor d_probs = torch::matmul(d_out, t.v.transpose(1, 2));    // (Hkv, rep*lq, lk)
      // Softmax backward: dS = P * (dP - sum_j P dP); masked keys have P = 0, so dS = 0 there.
      const Tensor d_scores =
          t.probs * (d_probs - (d_probs * t.probs).sum(-1, /*keepdim=*/true)) * scale;
      dq.narrow(0, b.q_begin, b.q_len).copy_(tokens_first(torch::matmul(d_scores, t.k), b.q_len));
      dk.narrow(0, b.k_begin, b.k_len)
          .copy_(torch::matmul(d_scores.transpose(1, 2), t.q).permute({1, 0, 2}));
      dv.narrow(0, b.k_begin, b.k_len)
          .copy_(torch::matmul(t.probs.transpose(1, 2), d_out).permute({1, 0, 2}));
    });
    return {dq, dk, dv, Tensor(), Tensor()};
  }
};

}  // namespace

Tensor varlen_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& cu_seqlens_q, const Tensor& cu_seqlens_k) {
  check_block_attention_inputs("varlen_attention_reference", q, k, v);
  return BlockAttention::apply(q.contiguous(), k.contiguous(), v.contiguous(), cu_seqlens_q,
                               cu_seqlens_k);
}

}  // namespace polar::kernels
