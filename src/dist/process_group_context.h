// Private to src/dist: the Context of a multi-process run. context.cpp holds rendezvous,
// collectives and failure reports; gradient_sync.cpp the bucketed gradient all-reduce;
// zero_sync.cpp the ZeRO shard layout, reduce-scatter and all-gather. A ZeRO run of one process
// uses this class too, without a process group (`local_`): collectives are then copies.
#pragma once

#include <c10/core/Event.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "polar/dist/dist.h"

namespace polar::dist::detail {

using Clock = std::chrono::steady_clock;

// Autograd hooks outlive the Context when a graph built earlier is still alive; they reach it
// through this link, which the Context cuts in its destructor.
class ProcessGroupContext;
struct HookLink {
  std::mutex mutex;
  ProcessGroupContext* context = nullptr;
  void cut() {
    std::lock_guard<std::mutex> lock(mutex);
    context = nullptr;
  }
};

class ProcessGroupContext final : public Context {
 public:
  ProcessGroupContext(const DistEnv& env, const torch::Device& device, const DistOptions& options);
  ~ProcessGroupContext() override;

  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }

  void broadcast_module(torch::nn::Module& module) override;
  void all_reduce_sum(std::vector<double>& values) override;
  void barrier() override;

  void attach_gradients(const std::vector<torch::Tensor>& parameters) override;
  void begin_micro_step(bool sync) override;
  void finish_step(int64_t rounds) override;

  const ShardLayout& shard_layout() const override;
  torch::Tensor gradient_shard() override;
  void all_gather_shard(const torch::Tensor& shard,
                        const std::vector<torch::Tensor>& targets) override;

  double last_exposed_comm_seconds() const override { return exposed_seconds_; }
  double last_total_comm_seconds() const override { return total_seconds_; }
  int64_t collective_count() const override { return collectives_.load(); }

  // Called from the autograd engine after parameter `index`'s gradient was accumulated.
  void on_gradient_ready(size_t index);

 private:
  struct Bucket {
    std::vector<size_t> params;    // indices into params_, in the bucket's order
    std::vector<int64_t> offsets;  // element offset of each param inside `flat`
    torch::Tensor flat;            // (numel,) all gradients of the bucket, one dtype and device
                                   // (ZeRO: (chunk * world,), allocated per round, zero padded)
    int64_t numel = 0;             // elements of the bucket's parameters
    int64_t chunk = 0;             // ZeRO: elements per rank's chunk, ceil(numel / world)
    int64_t own = 0;               // ZeRO: elements of this rank's chunk that are real (<= chunk)
    int64_t shard_offset = 0;      // ZeRO: where this rank's chunk starts in the gradient shard
    torch::Tensor received;        // ZeRO with NCCL: the reduce-scatter's output chunk
    size_t pending = 0;            // params whose gradient has not arrived this step
    c10::intrusive_ptr<c10d::Work> work;
    Clock::time_point launched_at;
    std::shared_ptr<std::atomic<int64_t>> completed_ns;  // set by the Work's future callback
  };

  // Collectives. Each is counted, and waited for with the configured timeout; a failure or a
  // timeout throws polar::Error naming the collective, this rank and the ranks that lag behind.
  c10::intrusive_ptr<c10d::Work> start_all_reduce(torch::Tensor& flat);
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what);
  [[noreturn]] void fail(const std::string& what, const std::string& reason);
  void check_usable(const std::string& what) const;
  // Records in the store the last synchronisation point this rank reached (for failure reports).
  void mark_progress(const std::string& label);
  std::string describe_peers();
  // Under a launcher's store: agrees with the other ranks on this round's epoch (the key
  // namespace) and returns it once every rank has joined, or names the missing ones.
  int64_t join_launcher_store(const c10::intrusive_ptr<c10d::Store>& store,
                              Clock::time_point started);
  std::string store_host() const;        // "on rank 0" or "of the launcher"
  std::string store_host_short() const;  // "rank 0" or "the launcher"

  void start_sync();            // resets the per-step bucket state; mutex_ held
  void launch_ready_buckets();  // launches buckets strictly in index order, as every rank does
  void launch_bucket(Bucket& bucket);
  void copy_gradient_into(size_t index);
  // Flushes parameters whose hook did not fire, launches and waits for every bucket of the
  // current round; stage 0 then writes the sums into .grad, ZeRO into the gradient shard.
  void complete_round();
  void record_comm_times(Clock::time_point finish_started, Clock::time_point waited);

  // ZeRO (zero_sync.cpp).
  void build_shard_layout();
  c10::intrusive_ptr<c10d::Work> start_reduce_scatter(Bucket& bucket);
  void complete_bucket(Bucket& bucket,
                       const std::string& what);  // waits; adds its chunk to the shard
  void ensure_bucket_buffer(Bucket& bucket);
  // Offload (shard in host memory, gradients on a GPU): a bucket's chunk is copied into pinned
  // memory asynchronously and added to the shard once its copy has landed, so backward goes on
  // while the copy runs. `wait` drains every copy (end of round); otherwise only finished ones.
  void drain_host_copies(bool wait);
  void gather_bucket(const Bucket& bucket, const torch::Tensor& shard,
                     const std::vector<torch::Tensor>& targets);

  DistEnv env_;
  torch::Device device_;
  DistOptions options_;
  std::string backend_name_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  std::atomic<bool> broken_{false};
  std::atomic<int64_t> collectives_{0};
  int64_t progress_ = 0;

  std::shared_ptr<HookLink> hook_link_;
  std::vector<torch::Tensor> params_;
  std::vector<std::shared_ptr<torch::autograd::Node>> grad_accumulators_;  // keeps the hooks alive
  std::vector<size_t> bucket_of_;                                          // param index -> bucket
  std::vector<size_t> slot_of_;  // param index -> position inside its bucket
  std::vector<char> ready_;
  std::vector<Bucket> buckets_;
  size_t next_bucket_ = 0;
  size_t next_complete_ = 0;  // ZeRO: buckets before it were waited for and freed this round
  bool local_ = false;        // world size 1 without a process group
  ShardLayout layout_;
  torch::Tensor grad_shard_;  // ZeRO: (layout_.numel,) float32 on the shard device
  struct HostCopy {
    torch::Tensor staging;  // pinned, the chunk as copied from the device
    int64_t shard_offset = 0;
    c10::Event landed{c10::DeviceType::CUDA};
  };
  std::deque<HostCopy> host_copies_;  // in flight, oldest first
  int64_t rounds_done_ = 0;           // ZeRO: rounds completed in the current step
  bool syncing_ = false;              // between begin_micro_step(true) and finish_step()
  int64_t steps_ = 0;
  std::mutex mutex_;  // bucket state: hooks may run on the autograd engine's device threads
  double exposed_seconds_ = 0;
  double total_seconds_ = 0;
};

}  // namespace polar::dist::detail
