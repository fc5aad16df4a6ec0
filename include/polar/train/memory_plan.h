// Memory plan: the bytes one rank holds for a training config at a given world size, by
// category, and the predicted peak; `polar plan` prints it and `polar train` logs it at start
// and the measured peak (CUDA allocator's max allocated; on CPU the RSS high-water mark) at the
// end.
//
// The model: parameters are fp32 on the training device; gradients fp32 (ZeRO-2: only the
// shard, plus buckets in flight); master weights and AdamW moments fp32 (ZeRO-1/2: 1/N each;
// offload: in host memory); activations per micro-batch from the layer's saved tensors (see
// memory_plan.cpp); buckets: DDP's preallocated all-reduce buffers or ZeRO's buckets in flight;
// workspace: optimizer temporaries and the packed batch. On CPU the process's own resident size
// (libraries, data) is counted too, since the measured peak is the RSS.
#pragma once

#include <cstdint>
#include <string>

#include "polar/config/train_config.h"
#include "polar/model/config.h"

namespace polar {

struct MemoryPlan {
  int64_t parameters = 0;  // count
  int64_t trainable = 0;   // count with gradients and optimizer state (LoRA: adapters, head)
  int world_size = 1;
  bool cuda = false;
  int64_t micro_batch_tokens = 0;
  std::string checkpointing;  // train.activation_checkpointing
  // Bytes per rank.
  int64_t params = 0, grads = 0, master = 0, optimizer = 0;
  int64_t activations_none = 0, activations_blocks = 0,
          activations = 0;  // activations: the configured mode
  int64_t autocast_weights =
      0;  // CUDA bf16/fp16: autocast's copies of the weights (at the forward's end)
  int64_t buckets = 0, workspace = 0, runtime = 0;
  int64_t host = 0;  // offloaded master + optimizer + gradient shard (host memory)
  int64_t peak = 0;  // predicted peak on the training device (CPU: of the process)

  // A table in GiB/MiB; `capacity_gib` > 0 adds whether the peak fits.
  std::string format(double capacity_gib = 0) const;
};

// `runtime_bytes`: the process's baseline (CPU only; pass current_rss_bytes() of a process that
// loaded the same libraries).
MemoryPlan plan_memory(const ModelConfig& shape, const TrainConfig& config, int world_size,
                       bool cuda, int64_t runtime_bytes);

int64_t current_rss_bytes();  // this process's resident set now
// Measured peak on `cuda` device `index` (max allocated of the caching allocator) or, for the
// CPU, the process's RSS high-water mark.
int64_t measured_peak_bytes(bool cuda, int index);

}  // namespace polar
