// Memory plan (see memory_plan.h).
#include "polar/train/memory_plan.h"

#include <fmt/format.h>

#include <sys/resource.h>
#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#if __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define POLAR_HAVE_CUDA_ALLOCATOR 1
#endif

namespace polar {
namespace {

constexpr int64_t kBucketBytes = 25 << 20;  // dist::DistOptions::bucket_bytes
constexpr int64_t kUpdateChunk = 1
                                 << 22;  // ShardedAdamW updates at most this many elements at once

// Bytes one token leaves saved for backward in one decoder layer (forward of the layer in
// src/model/reward_model.cpp).
double layer_bytes_per_token(const ModelConfig& c, bool cuda, bool bf16_weights) {
  const double H = static_cast<double>(c.hidden_size), I = static_cast<double>(c.intermediate_size);
  const double KV = static_cast<double>(c.num_kv_heads * c.head_size());
  // Queries and the attention output are num_heads * head_dim wide (H unless head_dim is
  // explicit, as Qwen3's); q/k norms (Qwen3) keep their input and fp32 upcast of q and k.
  const double Q = static_cast<double>(c.q_size());
  const double qk_norm = c.qk_norm() ? (cuda ? 2.0 + 4.0 : 4.0) * (Q + KV) : 0.0;
  if (cuda && bf16_weights) {
    // bf16 residual stream: each RMSNorm (HF's bf16 arithmetic) keeps its fp32 upcast and its
    // bf16 normalised output; the rest as below. 22H + 4Q + 4KV + 8I bytes.
    return 2 * (4 * H + 2 * H) + 2 * (3 * H + 2 * Q + 2 * KV + 2 * H + 4 * I) + qk_norm;
  }
  if (cuda) {
    // bf16 autocast, fused RMSNorm (it keeps its fp32 input and a per-token rstd): fp32, the
    // layer input and the residual after attention; bf16, the inputs of the q/k/v and gate/up
    // projections (autocast casts the norm output once per matmul), q, k, v and the attention
    // output as flash attention keeps them (o_proj's input is that output), and SwiGLU's gate,
    // silu, up and product. 18H + 4Q + 4KV + 8I bytes.
    return 4 * 2 * H + 2 * (3 * H + 2 * Q + 2 * KV + 2 * H + 4 * I) + qk_norm;
  }
  // fp32. Layer input, RMSNorm outputs (x2), the residual after attention, RoPE'd q and k; q, k
  // and their rotate_half copies, v, attention output, o_proj input, SwiGLU (gate, silu, up,
  // product).
  double bytes = 4 * (4 * H + Q + KV) + 4 * (2 * Q + 2 * KV + KV + 2 * Q + 4 * I) + qk_norm;
  // Masked SDPA on the CPU (LibTorch's fused CPU kernel: no score matrix is kept): the
  // repeated k/v heads it saves, its output and log-sum-exp.
  if (c.num_kv_heads < c.num_heads) bytes += 4 * 2 * Q;
  bytes += 4 * (Q + static_cast<double>(c.num_heads));
  return bytes;
}

std::string gib(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
}

// Extra activation bytes per token and layer of LoRA's adapters: each keeps x A (rank per token)
// and, when its input is not already in the compute dtype (q/k/v/gate/up read the fp32 norm
// output), its own cast of the input.
double lora_bytes_per_token(const ModelConfig& c, const LoraConfig& lora, bool cuda_bf16) {
  const double act = cuda_bf16 ? 2.0 : 4.0;
  double extra = 0;
  for (const auto& target : lora.targets) {
    extra += act * static_cast<double>(lora.rank);
    const bool reads_norm = target != "o" && target != "down";
    if (reads_norm && cuda_bf16) extra += 2.0 * static_cast<double>(c.hidden_size);
  }
  return extra;
}

// Weights, gradients, master weights, optimizer state and communication buckets per rank.
// `P` parameters train (everything, or with LoRA the adapters, head and trained norms).
void plan_states(MemoryPlan& m, const ModelConfig& c, const TrainConfig& cfg, int64_t P,
                 bool bf16_weights, int64_t small) {
  const auto& t = cfg.train;
  const LoraConfig& lora = cfg.model.lora;
  const int64_t N = m.world_size;
  const int64_t shard = (P + N - 1) / N;
  const int64_t base = c.num_parameters();
  m.params =
      (bf16_weights ? 2 * (base - small) + 4 * small : 4 * base) + 4 * lora.adapter_parameters(c);
  m.grads = t.zero == 2 ? 4 * shard : 4 * P;
  m.master = t.zero == 0 ? 0 : 4 * shard;
  m.optimizer = t.zero == 0 ? 8 * P : 8 * shard;
  if (t.offload_optimizer) {
    m.host = m.master + m.optimizer + (t.zero == 2 ? m.grads : 4 * shard);
    if (t.zero == 2) m.grads = 0;
    m.master = m.optimizer = 0;
  }
  if (t.zero == 0) {
    m.buckets = N > 1 ? 4 * P : 0;  // DDP keeps every bucket allocated
  } else {
    // Two reduce-scatter buckets in flight, and an all-gather bucket with its chunk.
    const int64_t bucket = std::min<int64_t>(kBucketBytes, 4 * P);
    m.buckets = 3 * bucket + bucket / N;
  }
}

}  // namespace

MemoryPlan plan_memory(const ModelConfig& c, const TrainConfig& cfg, int world, bool cuda,
                       int64_t runtime_bytes) {
  MemoryPlan m;
  const auto& t = cfg.train;
  const LoraConfig& lora = cfg.model.lora;
  // P: what trains (everything, or with LoRA the adapters, head and trained norms).
  const int64_t P = lora.enabled() ? lora.trainable_parameters(c) : c.num_parameters();
  const int64_t shard = (P + world - 1) / world;
  m.parameters = c.num_parameters() + lora.adapter_parameters(c);
  m.trainable = P;
  m.world_size = world;
  m.cuda = cuda;
  m.micro_batch_tokens = cfg.data.micro_batch_tokens;
  m.checkpointing = choice_name(t.activation_checkpointing);
  // train.param_dtype bf16: the matrices in bf16; norms and the reward head stay fp32. LoRA on
  // CUDA in bf16: the frozen matrices in bf16 (the same residual stream), adapters in fp32.
  const bool bf16_weights = cuda && (t.param_dtype == Precision::Bf16 ||
                                     (lora.enabled() && t.precision == Precision::Bf16));
  // Vectors that stay fp32: the norms (q/k norms too) and the reward head.
  const int64_t small =
      (2 * c.num_layers + 2) * c.hidden_size + (c.qk_norm() ? 2 * c.num_layers * c.head_size() : 0);
  plan_states(m, c, cfg, P, bf16_weights, small);

  // Activations of one micro-batch: every layer's saved tensors, the embedding output, the mask
  // and RoPE tables; with checkpointing only a checkpointed layer's input stays, and one layer
  // is recomputed at a time in backward. The peak is the larger of the forward's end (saved
  // tensors plus autocast's bf16 copies of the fp32 weights, kept until the forward returns) and
  // backward (saved tensors, a recomputed layer, and a few gradients of the widest activation).
  const double T = static_cast<double>(cfg.data.micro_batch_tokens);
  double per_layer = layer_bytes_per_token(c, cuda, bf16_weights) * T;
  if (lora.enabled())
    per_layer += lora_bytes_per_token(c, lora, cuda && t.precision == Precision::Bf16) * T;
  // The residual stream (a checkpointed layer's input) and the backward's gradients are fp32,
  // bf16 with bf16 weight matrices.
  const double stream = bf16_weights ? 2.0 : 4.0;
  const double boundary = stream * static_cast<double>(c.hidden_size) * T;
  const double fixed = boundary + (cuda ? 0.0 : T * static_cast<double>(cfg.data.row_tokens)) +
                       24.0 * T + 8.0 * static_cast<double>(c.head_size()) * T;
  const double L = static_cast<double>(c.num_layers);
  const double backward =
      3.0 * stream * T * static_cast<double>(std::max(c.intermediate_size, 2 * c.hidden_size));
  m.autocast_weights = cuda && t.precision != Precision::Fp32
                           ? (bf16_weights ? 2 * small + 2 * lora.adapter_parameters(c) : 2 * P)
                           : 0;
  const auto peak_of = [&](double saved, double recomputed_layer) {
    const double forward_end = fixed + saved + static_cast<double>(m.autocast_weights);
    return static_cast<int64_t>(std::max(forward_end, fixed + saved + recomputed_layer + backward));
  };
  m.activations_none = peak_of(L * per_layer, 0);
  m.activations_blocks = peak_of(L * boundary, per_layer);
  const int64_t k = activation_checkpoint_interval(t);
  if (k == 0) {
    m.activations = m.activations_none;
  } else {
    const double recomputed = std::ceil(L / static_cast<double>(k));
    m.activations = peak_of(recomputed * boundary + (L - recomputed) * per_layer, per_layer);
  }

  // Optimizer temporaries (sqrt and denominator of the largest tensor or update chunk) and the
  // gradient-norm reduction.
  const int64_t largest =
      lora.enabled() ? std::max<int64_t>(P / std::max<int64_t>(c.num_layers, 1), c.hidden_size)
                     : std::max(c.vocab_size * c.hidden_size, c.hidden_size * c.intermediate_size);
  m.workspace = 2 * 4 * (t.zero == 0 ? largest : std::min<int64_t>(shard, kUpdateChunk));
  m.runtime = cuda ? 0 : runtime_bytes;
  m.peak = m.params + m.grads + m.master + m.optimizer + m.buckets + m.activations + m.workspace +
           m.runtime;
  if (!cuda) m.peak += m.host;  // the host is the device
  return m;
}

std::string MemoryPlan::format(double capacity_gib) const {
  std::ostringstream o;
  o << fmt::format(
      "memory plan per rank: {:.3g}{} parameters, {} rank(s), {}, micro-batch {} tokens\n",
      static_cast<double>(parameters) / (parameters >= 1000000000 ? 1e9 : 1e6),
      parameters >= 1000000000 ? "B" : "M", world_size, cuda ? "CUDA" : "CPU", micro_batch_tokens);
  if (trainable != parameters)
    o << fmt::format("  LoRA: {:.4g}M trainable parameters (adapters, head), the base frozen\n",
                     static_cast<double>(trainable) / 1e6);
  const std::pair<const char*, int64_t> rows[] = {
      {"parameters", params},
      {"gradients (fp32)", grads},
      {"master weights (fp32)", master},
      {"optimizer (AdamW m, v)", optimizer},
      {"activations, no checkpointing", activations_none},
      {"activations, checkpointing blocks", activations_blocks},
      {"autocast weight copies (forward)", autocast_weights},
      {"buckets", buckets},
      {"workspace", workspace},
      {"runtime (process baseline)", runtime},
      {"host (offloaded)", host}};
  for (const auto& [name, bytes] : rows) o << fmt::format("  {:<36} {:>12}\n", name, gib(bytes));
  o << fmt::format("  {:<36} {:>12}  (activations: {}, {})\n", "predicted peak", gib(peak),
                   checkpointing, gib(activations));
  if (capacity_gib > 0) {
    const double cap = capacity_gib * 1024.0 * 1024 * 1024;
    o << fmt::format("  fits in {:.0f} GiB: {} ({:.0f}% used)\n", capacity_gib,
                     peak <= cap ? "yes" : "NO", 100.0 * static_cast<double>(peak) / cap);
  }
  return o.str();
}

int64_t current_rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

int64_t measured_peak_bytes(bool cuda, int index) {
#ifdef POLAR_HAVE_CUDA_ALLOCATOR
  if (cuda) {
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
    return stats.allocated_bytes[0].peak;
  }
#else
  (void)cuda;
  (void)index;
#endif
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;  // KiB on Linux
}

}  // namespace polar
