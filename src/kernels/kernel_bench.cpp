// Microbenchmarks of the fused CUDA paths (reward head, grouped pair loss, varlen flash
// attention) against the unfused LibTorch ops they replace, with the device's measured copy
// bandwidth and bf16 matmul rate as ceilings. Times are host wall-clock around op + device sync,
// median of reps, so launch overhead is included (as in a training step). Inputs rotate among
// several index sets so repeated runs do not just re-read L2.
#include <torch/torch.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "polar/common/error.h"
#include "polar/kernels/attention.h"
#include "polar/kernels/bench.h"
#include "polar/kernels/cuda.h"
#include "polar/kernels/pair_loss.h"
#include "polar/kernels/reward_head.h"

#ifdef POLAR_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace polar::kernels {
namespace {

using torch::Tensor;

torch::Device bench_device(const KernelBenchOptions& o) {
  return o.cpu_dry_run ? torch::Device(torch::kCPU) : torch::Device(torch::kCUDA);
}

void sync(const KernelBenchOptions& o) {
  if (!o.cpu_dry_run) torch::cuda::synchronize();
}

template <typename F>
double time_us(F&& fn, const KernelBenchOptions& o) {
  for (int i = 0; i < o.warmup; ++i) fn(i);
  sync(o);
  std::vector<double> t;
  for (int i = 0; i < o.reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn(i);
    sync(o);
    t.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double gbps(double bytes, double us) { return bytes / us / 1e3; }

struct Ceilings {
  double copy_gbps = 0;
  double matmul_tflops = 0;
};

std::string bench_ceilings(const KernelBenchOptions& o, Ceilings& c) {
  const auto opts = torch::TensorOptions().device(bench_device(o)).dtype(torch::kBFloat16);
  const int64_t bytes = o.cpu_dry_run ? 1LL << 20 : (o.quick ? 256LL : 2048LL) << 20;
  const Tensor a = torch::rand({bytes / 2}, opts), b = torch::empty_like(a);
  const double copy_us = time_us([&](int) { b.copy_(a); }, o);
  c.copy_gbps = gbps(2.0 * bytes, copy_us);  // read + write

  const int64_t n = o.cpu_dry_run ? 64 : (o.quick ? 4096 : 8192);
  const Tensor x = torch::randn({n, n}, opts), y = torch::randn({n, n}, opts);
  Tensor z = torch::empty({n, n}, opts);
  const double mm_us = time_us([&](int) { torch::mm_out(z, x, y); }, o);
  c.matmul_tflops = 2.0 * n * n * n / mm_us / 1e6;

  std::string md =
      "## Ceilings (measured)\n\n| what | size | time (us) | rate |\n|---|---|---|---|\n";
  md += fmt::format("| device-to-device copy | {} MiB | {:.1f} | {:.0f} GB/s (read+write) |\n",
                    bytes >> 20, copy_us, c.copy_gbps);
  md += fmt::format("| bf16 matmul | {}^3 | {:.1f} | {:.1f} TFLOP/s |\n\n", n, mm_us,
                    c.matmul_tflops);
  return md;
}

std::string bench_reward_head(const KernelBenchOptions& o, const Ceilings& c) {
  struct Case {
    int64_t T, H, N;
    torch::ScalarType dtype;
  };
  std::vector<Case> cases = {{32768, 2048, 512, torch::kBFloat16},
                             {32768, 4096, 2048, torch::kBFloat16},
                             {16384, 4096, 1024, torch::kFloat}};
  if (o.quick) cases = {{4096, 1024, 128, torch::kBFloat16}};
  if (o.cpu_dry_run) cases = {{64, 32, 9, torch::kBFloat16}, {64, 32, 9, torch::kFloat}};
  std::string md =
      "## Reward head (gather + RMSNorm + v_head), fused vs unfused LibTorch\n\n"
      "| pass | T x H, N, dtype | fused (us) | unfused (us) | speed-up | fused GB/s | % of copy |\n"
      "|---|---|---|---|---|---|---|\n";
  for (const Case& k : cases) {
    const auto dev = torch::TensorOptions().device(bench_device(o));
    const Tensor hidden = torch::randn({k.T, k.H}, dev.dtype(k.dtype)).requires_grad_();
    const Tensor nw = (1 + 0.1 * torch::randn({k.H}, dev)).requires_grad_();
    const Tensor hw = (0.02 * torch::randn({1, k.H}, dev)).requires_grad_();
    std::vector<Tensor> idx;  // rotate row sets
    for (int s = 0; s < 8; ++s)
      idx.push_back(
          std::get<0>(torch::randperm(k.T, dev.dtype(torch::kLong)).slice(0, 0, k.N).sort()));
    const Tensor grad_r = torch::randn({k.N}, dev);
    const double e = static_cast<double>(hidden.element_size());
    const std::string shape =
        fmt::format("{} x {}, {}, {}", k.T, k.H, k.N, k.dtype == torch::kFloat ? "fp32" : "bf16");

    auto fwd = [&](bool fused) {
      return time_us(
          [&](int i) {
            torch::NoGradGuard ng;
            reward_head(hidden, idx[i % 8], nw, hw, 1e-6, fused);
          },
          o);
    };
    auto fwd_bwd = [&](bool fused) {
      return time_us(
          [&](int i) {
            const Tensor r = reward_head(hidden, idx[i % 8], nw, hw, 1e-6, fused);
            torch::autograd::grad({r}, {hidden, nw, hw}, {grad_r});
          },
          o);
    };
    const double f_us = fwd(true), u_us = fwd(false);
    const double fb_us = fwd_bwd(true), ub_us = fwd_bwd(false);
    const double fwd_bytes = k.N * k.H * e;                     // the gathered rows, once
    const double fb_bytes = 3 * k.N * k.H * e + k.T * k.H * e;  // + re-read, row grads, (T, H) grad
    md += fmt::format("| forward | {} | {:.1f} | {:.1f} | {:.2f}x | {:.0f} | {:.0f}% |\n", shape,
                      f_us, u_us, u_us / f_us, gbps(fwd_bytes, f_us),
                      100 * gbps(fwd_bytes, f_us) / c.copy_gbps);
    md += fmt::format("| fwd+bwd | {} | {:.1f} | {:.1f} | {:.2f}x | {:.0f} | {:.0f}% |\n", shape,
                      fb_us, ub_us, ub_us / fb_us, gbps(fb_bytes, fb_us),
                      100 * gbps(fb_bytes, fb_us) / c.copy_gbps);
  }
  return md + "\n";
}

std::string bench_pair_loss(const KernelBenchOptions& o, const Ceilings& c) {
  struct Case {
    int64_t G, K;
  };
  std::vector<Case> cases = {{100000, 4}, {8192, 64}, {256, 1}};
  if (o.quick) cases = {{4096, 4}};
  if (o.cpu_dry_run) cases = {{17, 3}};
  std::string md =
      "## Grouped pair loss (forward + backward, includes the stats sync), fused vs unfused\n\n"
      "| G x K | pairs | fused (us) | unfused (us) | speed-up | fused GB/s | % of copy |\n"
      "|---|---|---|---|---|---|---|\n";
  const auto dev = torch::TensorOptions().device(bench_device(o));
  for (const Case& k : cases) {
    const int64_t N = k.G * (k.K + 1), P = k.G * k.K;
    const Tensor rewards = torch::randn({N}, dev).requires_grad_();
    const Tensor slots = torch::arange(N, dev.dtype(torch::kLong)).view({k.G, k.K + 1});
    const Tensor pos = slots.select(1, 0).contiguous();
    const Tensor neg = slots.slice(1, 1).reshape({-1}).contiguous();
    const Tensor offsets = torch::arange(k.G + 1, dev.dtype(torch::kLong)) * k.K;
    const double center = 0.01;
    const Tensor pair_pos = pos.repeat_interleave(k.K);  // (P): the unfused path's expanded pairs
    auto run = [&](bool fused) {
      return time_us(
          [&](int) {
            Tensor loss, stats;
            if (fused) {
              const GroupedPairLoss l = pair_loss_grouped(rewards, pos, offsets, neg,
                                                          static_cast<double>(P), 0.0, center);
              loss = l.loss;
              stats = l.stats;
            } else {  // the reference's ops (polar/loss) on the expanded pairs
              const Tensor rp = rewards.index_select(0, pair_pos),
                           rn = rewards.index_select(0, neg);
              const Tensor sum = (-torch::log_sigmoid(rp - rn) + center * (rp + rn).square()).sum();
              loss = sum / static_cast<double>(P);
              stats =
                  torch::stack({sum.detach().to(torch::kDouble), (rp > rn).sum().to(torch::kDouble),
                                (rp == rn).sum().to(torch::kDouble)});
            }
            torch::autograd::grad({loss}, {rewards});
            (void)stats.cpu();  // the step's one read of the counts
          },
          o);
    };
    const double f_us = run(true), u_us = run(false);
    const double bytes = 2.0 * N * 4 + (2.0 * k.G + 1 + P) * 8;  // rewards + grads, indices
    md += fmt::format("| {} x {} | {} | {:.1f} | {:.1f} | {:.2f}x | {:.1f} | {:.1f}% |\n", k.G, k.K,
                      P, f_us, u_us, u_us / f_us, gbps(bytes, f_us),
                      100 * gbps(bytes, f_us) / c.copy_gbps);
  }
  return md + "\n";
}

// Unfused reference for attention: per sequence, explicit scores, causal mask, fp32 softmax.
Tensor attention_math(const Tensor& q, const Tensor& k, const Tensor& v,
                      const std::vector<int64_t>& cu) {
  const int64_t rep = q.size(1) / k.size(1);
  std::vector<Tensor> outs;
  for (size_t s = 0; s + 1 < cu.size(); ++s) {
    const int64_t b = cu[s], L = cu[s + 1] - cu[s];
    const Tensor qs = q.slice(0, b, b + L).transpose(0, 1);                            // (Hq, L, D)
    const Tensor ks = k.slice(0, b, b + L).transpose(0, 1).repeat_interleave(rep, 0);  // (Hq, L, D)
    const Tensor vs = v.slice(0, b, b + L).transpose(0, 1).repeat_interleave(rep, 0);
    Tensor scores =
        torch::matmul(qs, ks.transpose(1, 2)).to(torch::kFloat) / std::sqrt(double(q.size(2)));
    const Tensor mask = torch::ones({L, L}, q.options().dtype(torch::kBool)).triu(1);
    scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity())
                 .softmax(-1)
                 .to(q.scalar_type());
    outs.push_back(torch::matmul(scores, vs).transpose(0, 1));  // (L, Hq, D)
  }
  return torch::cat(outs);
}

std::string bench_attention(const KernelBenchOptions& o, const Ceilings& c) {
  const int64_t S = o.cpu_dry_run ? 2 : (o.quick ? 4 : 16),
                L = o.cpu_dry_run ? 8 : (o.quick ? 512 : 1024);
  const int64_t Hq = 16, Hkv = 4, D = 128, T = S * L;
  const auto dev = torch::TensorOptions().device(bench_device(o)).dtype(torch::kBFloat16);
  const Tensor q = torch::randn({T, Hq, D}, dev).requires_grad_();
  const Tensor k = torch::randn({T, Hkv, D}, dev).requires_grad_();
  const Tensor v = torch::randn({T, Hkv, D}, dev).requires_grad_();
  const Tensor go = torch::randn({T, Hq, D}, dev);
  std::vector<int64_t> cu;
  for (int64_t s = 0; s <= S; ++s) cu.push_back(s * L);
  const Tensor cu_t = torch::tensor(cu, torch::kInt).to(bench_device(o));
  if (!varlen_attention_available(q))
    return "## Varlen attention\n\nflash attention not available on this device\n\n";
  const double fwd_flops = 4.0 * Hq * D * S * (L * (L + 1) / 2.0);  // causal: half the scores
  const double flash_fwd = time_us(
      [&](int) {
        torch::NoGradGuard ng;
        varlen_attention(q, k, v, cu_t, L);
      },
      o);
  const double flash_fb = time_us(
      [&](int) {
        torch::autograd::grad({varlen_attention(q, k, v, cu_t, L)}, {q, k, v}, {go});
      },
      o);
  const double math_fb = time_us(
      [&](int) {
        torch::autograd::grad({attention_math(q, k, v, cu)}, {q, k, v}, {go});
      },
      o);
  const double fb_flops = 3.5 * fwd_flops;  // backward ~2.5x the forward
  std::string md = fmt::format(
      "## Varlen causal attention (flash, {} seqs x {} tokens, Hq {}, Hkv {}, D {}, bf16)\n\n"
      "| pass | flash (us) | TFLOP/s | % of matmul peak | unfused math (us) | speed-up "
      "|\n|---|---|---|---|---|---|\n",
      S, L, Hq, Hkv, D);
  md +=
      fmt::format("| forward | {:.1f} | {:.1f} | {:.0f}% | | |\n", flash_fwd,
                  fwd_flops / flash_fwd / 1e6, 100 * fwd_flops / flash_fwd / 1e6 / c.matmul_tflops);
  md += fmt::format("| fwd+bwd | {:.1f} | {:.1f} | {:.0f}% | {:.1f} | {:.2f}x |\n\n", flash_fb,
                    fb_flops / flash_fb / 1e6, 100 * fb_flops / flash_fb / 1e6 / c.matmul_tflops,
                    math_fb, math_fb / flash_fb);
  return md;
}

}  // namespace

std::string run_kernel_bench(const KernelBenchOptions& options) {
  POLAR_CHECK(options.cpu_dry_run || cuda_kernels_available(),
              "kernel bench: needs the CUDA kernels compiled in and a CUDA device");
  POLAR_CHECK(options.reps > 0 && options.warmup >= 0, "kernel bench: reps must be positive");
  std::string md = "# Kernel benchmarks\n\n";
#ifdef POLAR_WITH_CUDA
  cudaDeviceProp prop{};
  int dev = 0;
  if (!options.cpu_dry_run && cudaGetDevice(&dev) == cudaSuccess &&
      cudaGetDeviceProperties(&prop, dev) == cudaSuccess) {
    md += fmt::format("Device: {} (sm_{}{}, {} SMs, {} MiB L2, {} GiB)\n\n", prop.name, prop.major,
                      prop.minor, prop.multiProcessorCount, prop.l2CacheSize >> 20,
                      prop.totalGlobalMem >> 30);
  }
#endif
  md += fmt::format("Median of {} runs after {} warm-up runs; host time around op + sync.\n\n",
                    options.reps, options.warmup);
  torch::manual_seed(0);
  Ceilings c;
  md += bench_ceilings(options, c);
  md += bench_reward_head(options, c);
  md += bench_pair_loss(options, c);
  md += bench_attention(options, c);
  return md;
}

}  // namespace polar::kernels
