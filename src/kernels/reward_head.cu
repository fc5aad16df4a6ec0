// Fused reward head: gather the reward-token rows of the final hidden states, RMS-normalise
// them, scale by the norm weight and project with the head weight (H -> 1), all in fp32.
// CPU reference and mirror: src/kernels/reward_head.cpp. Math, per gathered row x (H):
//   rstd = (mean(x^2) + eps)^-1/2,  u = norm_w * head_w,  r = rstd * sum(x * u)
//   dx = g * rstd * (u - x * rstd * r / H)           (g = dL/dr of this row)
//   A = sum_rows(g * rstd * x),  d norm_w = A * head_w,  d head_w = A * norm_w
// Deterministic: the weight gradients come from per-block partials (rows split in a fixed
// number of chunks) summed in a fixed order by a second kernel; no atomics anywhere.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "launch.h"

namespace polar::kernels::cuda {
namespace {

constexpr int kThreads = 256;  // threads per block in every kernel here
constexpr int kWarps = kThreads / 32;
// At least 4 resident blocks per SM: a 64-register budget (the default for this block size,
// 32, made ptxas spill).
constexpr int kMinBlocks = 4;
constexpr int64_t kRowsPerPartial = 32;  // rows of one weight-gradient partial

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}

// Sum of two values over the block, in a fixed order (shuffle tree, then warp 0 over the warp
// sums). The result is valid in thread 0.
__device__ __forceinline__ float2 block_sum2(float2 v, float2* smem) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    v.x += __shfl_down_sync(0xffffffffu, v.x, o);
    v.y += __shfl_down_sync(0xffffffffu, v.y, o);
  }
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? smem[lane] : make_float2(0.f, 0.f);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      v.x += __shfl_down_sync(0xffffffffu, v.x, o);
      v.y += __shfl_down_sync(0xffffffffu, v.y, o);
    }
  }
  return v;
}

// One block per reward row: one pass over the row gives both sums (x^2 and x*u).
template <typename T>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    reward_head_forward_kernel(const T* __restrict__ hidden, int64_t T_rows, int64_t H,
                               const int64_t* __restrict__ idx, const float* __restrict__ norm_w,
                               const float* __restrict__ head_w, float eps,
                               float* __restrict__ rewards, float* __restrict__ rstd_out) {
  __shared__ float2 smem[kWarps];
  const int64_t n = blockIdx.x;
  const int64_t row = idx[n];
  if (row < 0 || row >= T_rows) {  // uniform over the block: no thread reaches the barrier
    if (threadIdx.x == 0) {
      rewards[n] = NAN;
      rstd_out[n] = NAN;
    }
    return;
  }
  const T* x = hidden + row * H;
  float2 acc = make_float2(0.f, 0.f);  // (sum x^2, sum x*u)
  for (int64_t i = threadIdx.x; i < H; i += kThreads) {
    const float xi = to_float(x[i]);
    acc.x += xi * xi;
    acc.y += xi * (norm_w[i] * head_w[i]);
  }
  acc = block_sum2(acc, smem);
  if (threadIdx.x == 0) {
    const float rstd = 1.0f / sqrtf(acc.x / static_cast<float>(H) + eps);
    rstd_out[n] = rstd;
    rewards[n] = rstd * acc.y;
  }
}

// Grid (ceil(H / kThreads), partial rows). Thread = one column of one chunk of kRowsPerPartial
// rows: writes the row gradients of its column and the chunk's partial of A for that column.
// Warps read consecutive columns of one row, so every access is coalesced.
template <typename T>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    reward_head_backward_kernel(const T* __restrict__ hidden, int64_t T_rows, int64_t H,
                                const int64_t* __restrict__ idx, int64_t N,
                                const float* __restrict__ norm_w, const float* __restrict__ head_w,
                                const float* __restrict__ rewards, const float* __restrict__ rstd,
                                const float* __restrict__ grad_rewards, T* __restrict__ grad_rows,
                                float* __restrict__ partials) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (c >= H) return;
  const float u = norm_w[c] * head_w[c];
  const float inv_h = 1.0f / static_cast<float>(H);
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * kRowsPerPartial;
  const int64_t end = begin + kRowsPerPartial < N ? begin + kRowsPerPartial : N;
  float acc = 0.f;
  for (int64_t n = begin; n < end; ++n) {
    const int64_t row = idx[n];
    if (row < 0 || row >= T_rows) {  // its reward is NaN already; contribute nothing
      grad_rows[n * H + c] = from_float<T>(0.f);
      continue;
    }
    const float x = to_float(hidden[row * H + c]);
    const float s = rstd[n];
    const float g = grad_rewards[n] * s;
    grad_rows[n * H + c] = from_float<T>(g * (u - x * (s * rewards[n] * inv_h)));
    acc += g * x;
  }
  partials[static_cast<int64_t>(blockIdx.y) * H + c] = acc;
}

// Fixed-order sum of the partials per column, then the two weight gradients.
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    reward_head_weight_grad_kernel(const float* __restrict__ partials, int64_t rows, int64_t H,
                                   const float* __restrict__ norm_w,
                                   const float* __restrict__ head_w,
                                   float* __restrict__ grad_norm_w,
                                   float* __restrict__ grad_head_w) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (c >= H) return;
  float a = 0.f;
  for (int64_t r = 0; r < rows; ++r) a += partials[r * H + c];
  grad_norm_w[c] = a * head_w[c];
  grad_head_w[c] = a * norm_w[c];
}

template <typename T>
cudaError_t forward_typed(const void* hidden, int64_t T_rows, int64_t H, const int64_t* idx,
                          int64_t N, const float* norm_w, const float* head_w, float eps,
                          float* rewards, float* rstd, cudaStream_t stream) {
  reward_head_forward_kernel<T><<<static_cast<unsigned>(N), kThreads, 0, stream>>>(
      static_cast<const T*>(hidden), T_rows, H, idx, norm_w, head_w, eps, rewards, rstd);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward_typed(const void* hidden, int64_t T_rows, int64_t H, const int64_t* idx,
                           int64_t N, const float* norm_w, const float* head_w,
                           const float* rewards, const float* rstd, const float* grad_rewards,
                           void* grad_rows, float* grad_norm_w, float* grad_head_w,
                           float* workspace, cudaStream_t stream) {
  const int64_t rows = reward_head_partial_rows(N);
  if (rows > 65535) return cudaErrorInvalidConfiguration;  // grid.y limit: N > 2M rewards
  const dim3 grid(static_cast<unsigned>((H + kThreads - 1) / kThreads),
                  static_cast<unsigned>(rows));
  reward_head_backward_kernel<T><<<grid, kThreads, 0, stream>>>(
      static_cast<const T*>(hidden), T_rows, H, idx, N, norm_w, head_w, rewards, rstd, grad_rewards,
      static_cast<T*>(grad_rows), workspace);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  reward_head_weight_grad_kernel<<<grid.x, kThreads, 0, stream>>>(workspace, rows, H, norm_w,
                                                                  head_w, grad_norm_w, grad_head_w);
  return cudaGetLastError();
}

}  // namespace

int64_t reward_head_partial_rows(int64_t N) { return (N + kRowsPerPartial - 1) / kRowsPerPartial; }

cudaError_t reward_head_forward(const void* hidden, HiddenType type, int64_t T, int64_t H,
                                const int64_t* idx, int64_t N, const float* norm_w,
                                const float* head_w, float eps, float* rewards, float* rstd,
                                cudaStream_t stream) {
  if (N == 0) return cudaSuccess;
  switch (type) {
    case HiddenType::F32:
      return forward_typed<float>(hidden, T, H, idx, N, norm_w, head_w, eps, rewards, rstd, stream);
    case HiddenType::BF16:
      return forward_typed<__nv_bfloat16>(hidden, T, H, idx, N, norm_w, head_w, eps, rewards, rstd,
                                          stream);
    case HiddenType::F16:
      return forward_typed<__half>(hidden, T, H, idx, N, norm_w, head_w, eps, rewards, rstd,
                                   stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t reward_head_backward(const void* hidden, HiddenType type, int64_t T, int64_t H,
                                 const int64_t* idx, int64_t N, const float* norm_w,
                                 const float* head_w, const float* rewards, const float* rstd,
                                 const float* grad_rewards, void* grad_rows, float* grad_norm_w,
                                 float* grad_head_w, float* workspace, cudaStream_t stream) {
  if (N == 0) return cudaSuccess;  // the caller zero-fills the weight gradients
  switch (type) {
    case HiddenType::F32:
      return backward_typed<float>(hidden, T, H, idx, N, norm_w, head_w, rewards, rstd,
                                   grad_rewards, grad_rows, grad_norm_w, grad_head_w, workspace,
                                   stream);
    case HiddenType::BF16:
      return backward_typed<__nv_bfloat16>(hidden, T, H, idx, N, norm_w, head_w, rewards, rstd,
                                           grad_rewards, grad_rows, grad_norm_w, grad_head_w,
                                           workspace, stream);
    case HiddenType::F16:
      return backward_typed<__half>(hidden, T, H, idx, N, norm_w, head_w, rewards, rstd,
                                    grad_rewards, grad_rows, grad_norm_w, grad_head_w, workspace,
                                    stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace polar::kernels::cuda
