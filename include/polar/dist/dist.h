// Data-parallel training on c10d: TCPStore rendezvous, ProcessGroupGloo on CPU and
// ProcessGroupNCCL on CUDA. Single-process runs use the same API with no communication.
#pragma once

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace torch::nn {
class Module;
}

namespace polar::dist {

// Read from RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE/MASTER_ADDR/MASTER_PORT (polar-run,
// torchrun) or SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID (+ MASTER_ADDR/MASTER_PORT).
struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int restart_count = 0;
  // TORCHELASTIC_USE_AGENT_STORE=True (torchrun): the launcher hosts the store on
  // MASTER_ADDR:MASTER_PORT and every rank, rank 0 included, joins it as a client.
  bool agent_store = false;
  static DistEnv from_environment();
  // "rank 1/4 (local 1/2) via 10.0.0.1:29500": for logs and error messages.
  std::string describe() const;
  bool distributed() const { return world_size > 1; }
};

struct DistOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};  // every collective and rendezvous
  int64_t bucket_bytes = 25 << 20;
  // Build the process group even when world_size is 1 (device checks of the NCCL/Gloo path).
  bool force_process_group = false;
  // 0: every rank ends a step with the summed gradient of every parameter (DDP). 1 (ZeRO-1):
  // the last micro-step reduce-scatters the gradients, each rank keeps its shard. 2 (ZeRO-2):
  // every micro-step reduce-scatters from the backward hooks into the shard and frees .grad.
  int zero_stage = 0;
  // Where the gradient shard lives (ZeRO): the parameters' device, or the CPU for offload.
  std::optional<torch::Device> shard_device;
};

// ZeRO: this rank's part of the flattened parameters. Each bucket of parameters is cut into
// world_size equal chunks; rank r owns chunk r of every bucket. A piece is a run of one
// parameter's elements inside the shard (pieces name parameters, so a checkpoint written at one
// world size can be read at another).
struct ShardPiece {
  int64_t param = 0;         // index into the attached parameters
  int64_t param_offset = 0;  // first element inside the flattened parameter
  int64_t length = 0;
  int64_t shard_offset = 0;  // first element inside the shard
};
struct ShardLayout {
  std::vector<ShardPiece> pieces;  // in shard order
  int64_t numel = 0;               // elements in this rank's shard
  int64_t total_numel = 0;         // elements of all attached parameters
};

class Context {
 public:
  // world_size 1: a no-op context. Otherwise connects (rank 0 hosts the TCPStore, or every rank
  // joins the launcher's when env.agent_store; keys are scoped by env.restart_count) and builds
  // Gloo (CPU device) or NCCL (CUDA device) process group. Errors name the address and rank.
  static std::shared_ptr<Context> create(const DistEnv& env, const torch::Device& device,
                                         const DistOptions& options);
  virtual ~Context() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  bool is_main() const { return rank() == 0; }

  // Rank 0's values for every parameter and buffer.
  virtual void broadcast_module(torch::nn::Module& module) = 0;
  // Sum over ranks, in place (metrics, pair counts). One collective for the whole vector.
  virtual void all_reduce_sum(std::vector<double>& values) = 0;
  virtual void barrier() = 0;

  // Gradient sync: attach once; then per optimizer step call begin_micro_step(sync) before the
  // micro-step's backward (sync=false on accumulation micro-steps: no communication), and
  // finish_step() after the last backward, which waits for the buckets launched from autograd
  // hooks during backward and writes the *summed* gradients into .grad (the loss is already
  // normalised by the global pair count, so a sum is the right reduction). Every rank must call
  // finish_step() once per optimizer step; a rank that had no synchronising micro-step (no data
  // this step) still joins, contributing the gradients it holds or zeros.
  virtual void attach_gradients(const std::vector<torch::Tensor>& parameters) = 0;
  virtual void begin_micro_step(bool sync) = 0;
  // ZeRO-2 reduce-scatters every micro-step, so every rank must run the same number of rounds:
  // `rounds` is the largest micro-step count of any rank this step (ranks with fewer contribute
  // zeros for the rest). Ignored by stages 0 and 1.
  virtual void finish_step(int64_t rounds = 1) = 0;

  // ZeRO (zero_stage 1/2, after attach_gradients): this rank's shard layout, and its summed
  // gradient (float32, (layout.numel,), on shard_device) after finish_step. The gradient shard is
  // zeroed by the first synchronising micro-step of the next step.
  virtual const ShardLayout& shard_layout() const = 0;
  virtual torch::Tensor gradient_shard() = 0;
  // Every rank passes its shard of values ((layout.numel,), any device and dtype); afterwards
  // every tensor in `targets` (one per attached parameter, same shapes, any device/dtype) holds
  // the gathered values. Used to publish updated parameters and to consolidate master weights.
  virtual void all_gather_shard(const torch::Tensor& shard,
                                const std::vector<torch::Tensor>& targets) = 0;

  // Seconds spent waiting for communication in the last finish_step (not hidden by backward),
  // and total communication time; for the DDP benchmark.
  virtual double last_exposed_comm_seconds() const = 0;
  virtual double last_total_comm_seconds() const = 0;
  // Collectives issued since creation (broadcasts, all-reduces, gradient buckets); tests use it
  // to show that accumulation micro-steps communicate nothing.
  virtual int64_t collective_count() const = 0;
};

}  // namespace polar::dist
