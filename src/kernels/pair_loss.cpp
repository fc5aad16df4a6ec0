// Grouped POLAR pair loss: the autograd Function over the fused kernels (src/kernels/pair_loss.cu;
// a loop mirror of them on CPU tensors). The choice between this and the LibTorch reference is
// the loss module's (pair_loss in polar/loss/polar_loss.h).
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "cuda_util.h"
#include "fused_detail.h"
#include "polar/common/error.h"
#include "polar/kernels/cuda.h"
#include "polar/kernels/pair_loss.h"

namespace polar::kernels {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool is_index(const Tensor& t) {
  return t.defined() && t.dim() == 1 &&
         (t.scalar_type() == torch::kLong || t.scalar_type() == torch::kInt);
}

void check_shapes(const Tensor& rewards, const Tensor& pos, const Tensor& offsets,
                  const Tensor& neg, double global_pairs) {
  POLAR_CHECK(rewards.defined() && rewards.dim() == 1 && rewards.is_floating_point(),
              "pair_loss_grouped: rewards must be a floating (N) tensor");
  POLAR_CHECK(
      is_index(pos) && is_index(offsets) && is_index(neg),
      "pair_loss_grouped: pos_index, neg_offsets and neg_index must be 1-D integer tensors");
  POLAR_CHECK(offsets.size(0) == pos.size(0) + 1,
              "pair_loss_grouped: neg_offsets must have G + 1 = ", pos.size(0) + 1,
              " entries, got ", offsets.size(0));
  POLAR_CHECK(pos.device() == rewards.device() && offsets.device() == rewards.device() &&
                  neg.device() == rewards.device(),
              "pair_loss_grouped: rewards and index tensors must be on one device");
  POLAR_CHECK(std::isfinite(global_pairs) && global_pairs > 0,
              "pair_loss_grouped: global_pairs must be positive, got ", global_pairs);
}

// ---- CPU mirror of the kernels (same checks, same occurrence-ordered backward) ----------------
template <typename S>
void mirror_forward(const Tensor& rewards, const Tensor& pos, const Tensor& offsets,
                    const Tensor& neg, double margin_d, double center_d, double global_pairs,
                    Tensor& loss, Tensor& stats) {
  const int64_t N = rewards.size(0), G = pos.size(0), P = neg.size(0);
  const S* r = rewards.data_ptr<S>();
  const int64_t *ip = pos.data_ptr<int64_t>(), *o = offsets.data_ptr<int64_t>(),
                *in = neg.data_ptr<int64_t>();
  const S margin = static_cast<S>(margin_d), center = static_cast<S>(center_d);
  // The kernel sums in S along a fixed tree (short sequential runs); a long sequential S sum
  // would be far less accurate, so the mirror's total is kept in double.
  double sum = 0;
  int64_t correct = 0, ties = 0, invalid = 0;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t b = o[g], e = o[g + 1], p_idx = ip[g];
    if (b < 0 || e <= b || e > P || p_idx < 0 || p_idx >= N || (g == 0 && b != 0) ||
        (g == G - 1 && e != P)) {
      ++invalid;
      continue;
    }
    const S rp = r[p_idx];
    for (int64_t p = b; p < e; ++p) {
      if (in[p] < 0 || in[p] >= N) {
        ++invalid;
        continue;
      }
      const S rn = r[in[p]], d = rp - rn - margin, s = rp + rn;
      sum += std::max(-d, S(0)) + std::log1p(std::exp(-std::abs(d))) + center * s * s;
      correct += rp > rn;
      ties += rp == rn;
    }
  }
  loss = torch::full({}, static_cast<S>(sum / global_pairs), rewards.options());
  stats = torch::tensor({static_cast<double>(sum), static_cast<double>(correct),
                         static_cast<double>(ties), static_cast<double>(invalid)},
                        torch::kDouble);
}

template <typename S>
Tensor mirror_backward(const Tensor& rewards, const Tensor& pos, const Tensor& offsets,
                       const Tensor& neg, const detail::OccurrenceMap& map, const Tensor& grad_loss,
                       double margin_d, double center_d, double global_pairs) {
  const int64_t N = rewards.size(0), G = pos.size(0);
  const S* r = rewards.data_ptr<S>();
  const int64_t *ip = pos.data_ptr<int64_t>(), *o = offsets.data_ptr<int64_t>(),
                *in = neg.data_ptr<int64_t>();
  const int64_t *entries = map.entries.data_ptr<int64_t>(), *eo = map.offsets.data_ptr<int64_t>();
  const S margin = static_cast<S>(margin_d), center2 = static_cast<S>(2.0 * center_d);
  const S scale = grad_loss.item<S>() / static_cast<S>(global_pairs);
  auto sigmoid_neg = [](S d) { return S(1) / (S(1) + std::exp(d)); };
  Tensor grad = torch::empty({N}, rewards.options());
  S* gr = grad.data_ptr<S>();
  for (int64_t n = 0; n < N; ++n) {
    S acc = 0;
    for (int64_t j = eo[n]; j < eo[n + 1]; ++j) {
      const int64_t e = entries[j];
      if (e < G) {
        const S rp = r[ip[e]];
        for (int64_t p = o[e]; p < o[e + 1]; ++p) {
          const S rn = r[in[p]];
          acc += -sigmoid_neg(rp - rn - margin) + center2 * (rp + rn);
        }
      } else {
        const int64_t p = e - G;
        const int64_t g = std::upper_bound(o, o + G + 1, p) - o - 1;
        const S rp = r[ip[g]], rn = r[in[p]];
        acc += sigmoid_neg(rp - rn - margin) + center2 * (rp + rn);
      }
    }
    gr[n] = acc * scale;
  }
  return grad;
}

struct PairLossFunction : public torch::autograd::Function<PairLossFunction> {
  // rewards float or double, contiguous; indices int64, contiguous. Returns {loss, stats (4)}.
  static variable_list forward(AutogradContext* ctx, const Tensor& rewards, const Tensor& pos,
                               const Tensor& offsets, const Tensor& neg, double global_pairs,
                               double margin, double center_coef) {
    const bool is_double = rewards.scalar_type() == torch::kDouble;
    Tensor loss, stats;
    if (rewards.is_cuda()) {
#ifdef POLAR_WITH_CUDA
      c10::cuda::CUDAGuard guard(rewards.device());
      const cuda::PairLossArgs args =
          make_args(rewards, pos, offsets, neg, global_pairs, margin, center_coef);
      loss = torch::empty({}, rewards.options());
      stats = torch::empty({4}, rewards.options().dtype(torch::kDouble));
      const Tensor workspace = torch::empty({cuda::pair_loss_forward_workspace_bytes(args.G)},
                                            rewards.options().dtype(torch::kByte));
      cuda::check(
          cuda::pair_loss_forward(args, is_double, loss.data_ptr(), stats.data_ptr<double>(),
                                  workspace.data_ptr(), cuda::current_stream()),
          "pair_loss forward kernel");
#else
      POLAR_CHECK(false, "pair_loss_grouped: CUDA kernels are not compiled in");
#endif
    } else if (is_double) {
      mirror_forward<double>(rewards, pos, offsets, neg, margin, center_coef, global_pairs, loss,
                             stats);
    } else {
      mirror_forward<float>(rewards, pos, offsets, neg, margin, center_coef, global_pairs, loss,
                            stats);
    }
    ctx->save_for_backward({rewards, pos, offsets, neg});
    ctx->saved_data["global_pairs"] = global_pairs;
    ctx->saved_data["margin"] = margin;
    ctx->saved_data["center_coef"] = center_coef;
    ctx->mark_non_differentiable({stats});
    return {loss, stats};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &rewards = saved[0], &pos = saved[1], &offsets = saved[2], &neg = saved[3];
    const double global_pairs = ctx->saved_data["global_pairs"].toDouble();
    const double margin = ctx->saved_data["margin"].toDouble();
    const double center_coef = ctx->saved_data["center_coef"].toDouble();
    const Tensor grad_loss = grads[0].to(rewards.scalar_type()).contiguous();  // 0-dim
    const detail::OccurrenceMap map = detail::occurrence_map(pos, neg, rewards.size(0));
    const bool is_double = rewards.scalar_type() == torch::kDouble;
    Tensor grad;  // (N)
    if (rewards.is_cuda()) {
#ifdef POLAR_WITH_CUDA
      c10::cuda::CUDAGuard guard(rewards.device());
      const cuda::PairLossArgs args =
          make_args(rewards, pos, offsets, neg, global_pairs, margin, center_coef);
      grad = torch::empty_like(rewards);
      cuda::check(cuda::pair_loss_backward(
                      args, is_double, grad_loss.data_ptr(), map.entries.data_ptr<int64_t>(),
                      map.offsets.data_ptr<int64_t>(), grad.data_ptr(), cuda::current_stream()),
                  "pair_loss backward kernel");
#endif
    } else if (is_double) {
      grad = mirror_backward<double>(rewards, pos, offsets, neg, map, grad_loss, margin,
                                     center_coef, global_pairs);
    } else {
      grad = mirror_backward<float>(rewards, pos, offsets, neg, map, grad_loss, margin, center_coef,
                                    global_pairs);
    }
    return {grad, Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }

#ifdef POLAR_WITH_CUDA
  static cuda::PairLossArgs make_args(const Tensor& rewards, const Tensor& pos,
                                      const Tensor& offsets, const Tensor& neg, double global_pairs,
                                      double margin, double center_coef) {
    cuda::PairLossArgs a;
    a.rewards = rewards.data_ptr();
    a.N = rewards.size(0);
    a.pos = pos.data_ptr<int64_t>();
    a.offsets = offsets.data_ptr<int64_t>();
    a.neg = neg.data_ptr<int64_t>();
    a.G = pos.size(0);
    a.P = neg.size(0);
    a.margin = margin;
    a.center_coef = center_coef;
    a.global_pairs = global_pairs;
    return a;
  }
#endif
};

}  // namespace

namespace detail {

OccurrenceMap occurrence_map(const Tensor& pos_index, const Tensor& neg_index, int64_t N) {
  const Tensor keys =
      torch::cat({pos_index.to(torch::kLong), neg_index.to(torch::kLong)});  // (G + P)
  const auto sorted = keys.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  OccurrenceMap map;
  map.entries = std::get<1>(sorted).contiguous();
  map.offsets =
      torch::searchsorted(std::get<0>(sorted), torch::arange(N + 1, keys.options())).contiguous();
  return map;
}

}  // namespace detail

GroupedPairLoss pair_loss_grouped(const Tensor& rewards, const Tensor& pos_index,
                                  const Tensor& neg_offsets, const Tensor& neg_index,
                                  double global_pairs, double margin, double center_coef) {
  check_shapes(rewards, pos_index, neg_offsets, neg_index, global_pairs);
  POLAR_CHECK(!rewards.is_cuda() || cuda_kernels_available(),
              "pair_loss_grouped: the CUDA kernels are not compiled in");
  const auto t = rewards.scalar_type();
  const Tensor r = (t == torch::kFloat || t == torch::kDouble ? rewards : rewards.to(torch::kFloat))
                       .contiguous();
  const auto as_index = [](const Tensor& x) { return x.to(torch::kLong).contiguous(); };
  const auto out = PairLossFunction::apply(r, as_index(pos_index), as_index(neg_offsets),
                                           as_index(neg_index), global_pairs, margin, center_coef);
  return {out[0], out[1]};
}

}  // namespace polar::kernels
