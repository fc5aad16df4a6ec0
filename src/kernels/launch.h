// Host launchers of the CUDA kernels in src/kernels/*.cu. Raw pointers and a stream only, so the
// .cu files need no LibTorch headers (fast nvcc builds) and the .cpp wrappers own all tensor
// logic: validation, allocation, dtype conversion and autograd.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace polar::kernels::cuda {

// Element type of the hidden states (the only tensor read in a low-precision type).
enum class HiddenType { F32, BF16, F16 };

// ---- reward head (src/kernels/reward_head.cu) -------------------------------------------------
// hidden (T, H); idx (N); norm_w, head_w (H) fp32. Writes rewards (N) and rstd (N), both fp32.
// An index outside [0, T) gives a NaN reward (and reads nothing) instead of a fault.
cudaError_t reward_head_forward(const void* hidden, HiddenType type, int64_t T, int64_t H,
                                const int64_t* idx, int64_t N, const float* norm_w,
                                const float* head_w, float eps, float* rewards, float* rstd,
                                cudaStream_t stream);

// Rows of the per-block weight partials used by reward_head_backward: a function of N only, so
// the reduction order (and the bits) never depend on the device.
int64_t reward_head_partial_rows(int64_t N);

// grad_rewards, rewards, rstd (N) fp32. Writes grad_rows (N, H) in the hidden type (the gradient
// of each gathered row; the caller scatters it into (T, H)), and grad_norm_w, grad_head_w (H) fp32.
// workspace: reward_head_partial_rows(N) * H floats.
cudaError_t reward_head_backward(const void* hidden, HiddenType type, int64_t T, int64_t H,
                                 const int64_t* idx, int64_t N, const float* norm_w,
                                 const float* head_w, const float* rewards, const float* rstd,
                                 const float* grad_rewards, void* grad_rows, float* grad_norm_w,
                                 float* grad_head_w, float* workspace, cudaStream_t stream);

// ---- grouped pair loss (src/kernels/pair_loss.cu) ---------------------------------------------
// Group g: positive pos[g], negatives neg[offsets[g] .. offsets[g+1]). Scalar is float or double
// (the accumulation type equals the rewards' type).
struct PairLossArgs {
  const void* rewards = nullptr;  // (N)
  int64_t N = 0;
  const int64_t* pos = nullptr;      // (G)
  const int64_t* offsets = nullptr;  // (G+1)
  const int64_t* neg = nullptr;      // (P)
  int64_t G = 0;
  int64_t P = 0;
  double margin = 0.0;
  double center_coef = 0.0;
  double global_pairs = 1.0;
};

// Bytes of workspace pair_loss_forward needs (per-block partials and a completion counter).
int64_t pair_loss_forward_workspace_bytes(int64_t G);

// One launch. loss (1) in the rewards' type = sum / global_pairs; stats (4) double:
// loss_sum, n_correct, n_ties, n_invalid (bad offsets or indices; nonzero means reject).
cudaError_t pair_loss_forward(const PairLossArgs& a, bool is_double, void* loss, double* stats,
                              void* workspace, cudaStream_t stream);

// One launch. grad_rewards (N) in the rewards' type. Every reward n sums, in the fixed order
// entries[entry_offsets[n] .. entry_offsets[n+1]), the contributions of its occurrences: entry
// e < G is "positive of group e", e >= G is "negative of pair e - G". grad_loss (1) on device.
cudaError_t pair_loss_backward(const PairLossArgs& a, bool is_double, const void* grad_loss,
                               const int64_t* entries, const int64_t* entry_offsets,
                               void* grad_rewards, cudaStream_t stream);

}  // namespace polar::kernels::cuda
