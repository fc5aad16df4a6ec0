// Fused grouped POLAR pair loss. Groups come as CSR (positive pos[g], negatives
// neg[offsets[g] .. offsets[g+1])); every (positive, negative) pair adds
//   softplus(-(r_pos - r_neg - margin)) + center_coef * (r_pos + r_neg)^2
// and the sum is divided by global_pairs. CPU reference and mirror: src/kernels/pair_loss.cpp.
// Forward: one launch. A warp walks a group's negatives, blocks reduce in a fixed order and
// write a partial; the last block to finish (integer completion counter) sums the partials in
// block order. Backward: one launch, one thread per reward summing its occurrences in a fixed
// order. No float atomics: the same inputs give the same bits on every run.
#include <cuda_runtime.h>

#include <cmath>

#include "launch.h"

namespace polar::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// At least 4 resident blocks per SM: a 64-register budget (the default for this block size,
// 32, made ptxas spill).
constexpr int kMinBlocks = 4;
constexpr int64_t kMaxBlocks = 1024;  // fixed cap: the grid (hence the bits) depends on G only

template <typename S>
struct Partial {
  S loss;
  unsigned long long correct, ties, invalid;
};

__device__ __forceinline__ float softplus(float x) {
  return fmaxf(x, 0.f) + log1pf(expf(-fabsf(x)));
}
__device__ __forceinline__ double softplus(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }
// sigmoid(-d) = 1 / (1 + e^d): 0 for large d and 1 for very negative d, never NaN.
__device__ __forceinline__ float sigmoid_neg(float d) { return 1.f / (1.f + expf(d)); }
__device__ __forceinline__ double sigmoid_neg(double d) { return 1.0 / (1.0 + exp(d)); }

template <typename S>
__device__ __forceinline__ Partial<S> warp_sum(Partial<S> v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    v.loss += __shfl_down_sync(0xffffffffu, v.loss, o);
    v.correct += __shfl_down_sync(0xffffffffu, v.correct, o);
    v.ties += __shfl_down_sync(0xffffffffu, v.ties, o);
    v.invalid += __shfl_down_sync(0xffffffffu, v.invalid, o);
  }
  return v;
}

// Fixed-order block sum; valid in thread 0.
template <typename S>
__device__ __forceinline__ Partial<S> block_sum(Partial<S> v, Partial<S>* smem) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? smem[lane] : Partial<S>{S(0), 0ull, 0ull, 0ull};
    v = warp_sum(v);
  }
  return v;
}

template <typename S>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    pair_loss_forward_kernel(PairLossArgs a, S* __restrict__ loss_out, double* __restrict__ stats,
                             Partial<S>* __restrict__ partials,
                             unsigned int* __restrict__ counter) {
  __shared__ Partial<S> smem[kWarps];
  __shared__ bool is_last;
  const S* __restrict__ r = static_cast<const S*>(a.rewards);
  const S margin = static_cast<S>(a.margin), center = static_cast<S>(a.center_coef);
  const int lane = threadIdx.x % 32;
  const int64_t warp_id = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int64_t n_warps = static_cast<int64_t>(gridDim.x) * kWarps;

  Partial<S> acc{S(0), 0ull, 0ull, 0ull};
  for (int64_t g = warp_id; g < a.G; g += n_warps) {
    const int64_t b = a.offsets[g], e = a.offsets[g + 1], ip = a.pos[g];
    // CSR checks: starts at 0, K >= 1 (strictly increasing), ends at P, positive in range.
    const bool bad = b < 0 || e <= b || e > a.P || ip < 0 || ip >= a.N || (g == 0 && b != 0) ||
                     (g == a.G - 1 && e != a.P);
    if (bad) {  // uniform over the warp
      if (lane == 0) ++acc.invalid;
      continue;
    }
    const S rp = r[ip];
    for (int64_t p = b + lane; p < e; p += 32) {
      const int64_t in = a.neg[p];
      if (in < 0 || in >= a.N) {
        ++acc.invalid;
        continue;
      }
      const S rn = r[in];
      const S sum = rp + rn;
      acc.loss += softplus(-(rp - rn - margin)) + center * sum * sum;
      acc.correct += rp > rn ? 1ull : 0ull;
      acc.ties += rp == rn ? 1ull : 0ull;
    }
  }
  acc = block_sum(acc, smem);

  if (threadIdx.x == 0) {
    partials[blockIdx.x] = acc;
    __threadfence();  // the partial is visible before the counter says so
    is_last = atomicAdd(counter, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!is_last) return;

  // Last block: sum the partials in block order (each thread a fixed strided subset, then the
  // fixed tree). __ldcg reads past L1, which may not hold other blocks' writes.
  __threadfence();
  Partial<S> tot{S(0), 0ull, 0ull, 0ull};
  for (int64_t i = threadIdx.x; i < gridDim.x; i += kThreads) {
    tot.loss += __ldcg(&partials[i].loss);
    tot.correct += __ldcg(&partials[i].correct);
    tot.ties += __ldcg(&partials[i].ties);
    tot.invalid += __ldcg(&partials[i].invalid);
  }
  __syncthreads();  // smem is reused
  tot = block_sum(tot, smem);
  if (threadIdx.x == 0) {
    loss_out[0] = tot.loss / static_cast<S>(a.global_pairs);
    stats[0] = static_cast<double>(tot.loss);
    stats[1] = static_cast<double>(tot.correct);
    stats[2] = static_cast<double>(tot.ties);
    stats[3] = static_cast<double>(tot.invalid);
    *counter = 0u;
  }
}

// Group of pair p: the largest g with offsets[g] <= p (offsets strictly increasing, checked in
// the forward).
__device__ __forceinline__ int64_t group_of(const int64_t* __restrict__ offsets, int64_t G,
                                            int64_t p) {
  int64_t lo = 0, hi = G;  // offsets[lo] <= p < offsets[hi]
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (offsets[mid] <= p)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

template <typename S>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    pair_loss_backward_kernel(PairLossArgs a, const S* __restrict__ grad_loss,
                              const int64_t* __restrict__ entries,
                              const int64_t* __restrict__ entry_offsets, S* __restrict__ grad) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (n >= a.N) return;
  const S* __restrict__ r = static_cast<const S*>(a.rewards);
  const S margin = static_cast<S>(a.margin), center2 = static_cast<S>(2.0 * a.center_coef);
  S acc = S(0);
  for (int64_t j = entry_offsets[n]; j < entry_offsets[n + 1]; ++j) {
    const int64_t e = entries[j];
    if (e < a.G) {  // positive of group e: one term per negative of the group
      const S rp = r[a.pos[e]];
      for (int64_t p = a.offsets[e]; p < a.offsets[e + 1]; ++p) {
        const S rn = r[a.neg[p]];
        acc += -sigmoid_neg(rp - rn - margin) + center2 * (rp + rn);
      }
    } else {  // negative of pair e - G
      const int64_t p = e - a.G;
      const S rp = r[a.pos[group_of(a.offsets, a.G, p)]];
      const S rn = r[a.neg[p]];
      acc += sigmoid_neg(rp - rn - margin) + center2 * (rp + rn);
    }
  }
  grad[n] = acc * (grad_loss[0] / static_cast<S>(a.global_pairs));
}

int64_t forward_blocks(int64_t G) {
  const int64_t want = (G + kWarps - 1) / kWarps;
  return want < 1 ? 1 : (want > kMaxBlocks ? kMaxBlocks : want);
}

template <typename S>
cudaError_t forward_typed(const PairLossArgs& a, void* loss, double* stats, void* workspace,
                          cudaStream_t stream) {
  const int64_t blocks = forward_blocks(a.G);
  auto* partials = static_cast<Partial<S>*>(workspace);
  auto* counter = reinterpret_cast<unsigned int*>(static_cast<char*>(workspace) +
                                                  kMaxBlocks * sizeof(Partial<double>));
  cudaError_t err = cudaMemsetAsync(counter, 0, sizeof(unsigned int), stream);
  if (err != cudaSuccess) return err;
  pair_loss_forward_kernel<S><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      a, static_cast<S*>(loss), stats, partials, counter);
  return cudaGetLastError();
}

template <typename S>
cudaError_t backward_typed(const PairLossArgs& a, const void* grad_loss, const int64_t* entries,
                           const int64_t* entry_offsets, void* grad, cudaStream_t stream) {
  if (a.N == 0) return cudaSuccess;
  const int64_t blocks = (a.N + kThreads - 1) / kThreads;
  pair_loss_backward_kernel<S><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      a, static_cast<const S*>(grad_loss), entries, entry_offsets, static_cast<S*>(grad));
  return cudaGetLastError();
}

}  // namespace

int64_t pair_loss_forward_workspace_bytes(int64_t) {
  return kMaxBlocks * static_cast<int64_t>(sizeof(Partial<double>)) + 16;
}

cudaError_t pair_loss_forward(const PairLossArgs& a, bool is_double, void* loss, double* stats,
                              void* workspace, cudaStream_t stream) {
  return is_double ? forward_typed<double>(a, loss, stats, workspace, stream)
                   : forward_typed<float>(a, loss, stats, workspace, stream);
}

cudaError_t pair_loss_backward(const PairLossArgs& a, bool is_double, const void* grad_loss,
                               const int64_t* entries, const int64_t* entry_offsets,
                               void* grad_rewards, cudaStream_t stream) {
  return is_double
             ? backward_typed<double>(a, grad_loss, entries, entry_offsets, grad_rewards, stream)
             : backward_typed<float>(a, grad_loss, entries, entry_offsets, grad_rewards, stream);
}

}  // namespace polar::kernels::cuda
