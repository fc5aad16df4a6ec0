// ZeRO on c10d: the shard layout, the bucketed reduce-scatter that fills the gradient shard, and
// the all-gather that publishes a shard (updated parameters, consolidated master weights).
//
// Every bucket of gradients is padded to world * chunk elements; rank r owns elements
// [r * chunk, r * chunk + own) of each bucket. NCCL runs the real collectives
// (_reduce_scatter_base, _allgather_base). Gloo's CPU backend has no reduce-scatter in the
// LibTorch we build against, so on Gloo the reduce-scatter is an all-reduce of the bucket
// followed by taking this rank's slice (same sums, twice the traffic); its all-gather is Gloo's
// own allgather. Without a process group (one process) both are local copies.
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <algorithm>

#include "polar/common/error.h"
#include "process_group_context.h"

namespace polar::dist::detail {

void ProcessGroupContext::build_shard_layout() {
  const int64_t world = env_.world_size, rank = env_.rank;
  layout_ = ShardLayout{};
  for (const auto& p : params_) layout_.total_numel += p.numel();
  for (auto& bucket : buckets_) {
    bucket.chunk = (bucket.numel + world - 1) / world;
    const int64_t begin = std::min(bucket.numel, rank * bucket.chunk);
    const int64_t end = std::min(bucket.numel, begin + bucket.chunk);
    bucket.own = end - begin;
    bucket.shard_offset = layout_.numel;
    for (size_t slot = 0; slot < bucket.params.size(); ++slot) {
      const int64_t p_begin = bucket.offsets[slot];
      const int64_t p_end = p_begin + params_[bucket.params[slot]].numel();
      const int64_t lo = std::max(begin, p_begin), hi = std::min(end, p_end);
      if (hi <= lo) continue;
      layout_.pieces.push_back(ShardPiece{static_cast<int64_t>(bucket.params[slot]), lo - p_begin,
                                          hi - lo, bucket.shard_offset + (lo - begin)});
    }
    layout_.numel += bucket.own;
  }
  const torch::Device shard_device = options_.shard_device.value_or(device_);
  // In host memory (offload) the shard is pageable: device copies go through small pinned staging
  // buffers (complete_bucket, gather_bucket), since pinning a shard of several GiB doubles it
  // (the pinned allocator rounds sizes up to a power of two) and pins host memory the update needs.
  grad_shard_ = torch::zeros({layout_.numel},
                             torch::TensorOptions().dtype(torch::kFloat32).device(shard_device));
}

const ShardLayout& ProcessGroupContext::shard_layout() const {
  POLAR_CHECK(options_.zero_stage > 0, "dist: shard_layout() needs zero_stage 1 or 2");
  return layout_;
}

torch::Tensor ProcessGroupContext::gradient_shard() {
  POLAR_CHECK(options_.zero_stage > 0, "dist: gradient_shard() needs zero_stage 1 or 2");
  return grad_shard_;
}

void ProcessGroupContext::ensure_bucket_buffer(Bucket& bucket) {
  if (bucket.flat.defined()) return;
  const auto& first = params_[bucket.params.front()];
  bucket.flat =
      torch::zeros({bucket.chunk * env_.world_size}, first.options().requires_grad(false));
}

c10::intrusive_ptr<c10d::Work> ProcessGroupContext::start_reduce_scatter(Bucket& bucket) {
  ensure_bucket_buffer(bucket);
  if (local_) return {};
  if (backend_name_ != "NCCL")
    return start_all_reduce(bucket.flat);  // Gloo: all-reduce, then slice
  bucket.received = torch::empty({bucket.chunk}, bucket.flat.options());
  c10d::ReduceScatterOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  opts.timeout = options_.timeout;
  ++collectives_;
  return backend_->_reduce_scatter_base(bucket.received, bucket.flat, opts);
}

void ProcessGroupContext::complete_bucket(Bucket& bucket, const std::string& what) {
  if (bucket.work) wait(bucket.work, what);
  bucket.work.reset();
  torch::NoGradGuard no_grad;
  drain_host_copies(false);
  if (bucket.own > 0) {
    const torch::Tensor mine = bucket.received.defined()
                                   ? bucket.received.narrow(0, 0, bucket.own)
                                   : bucket.flat.narrow(0, env_.rank * bucket.chunk, bucket.own);
    if (mine.is_cuda() && grad_shard_.is_cpu()) {
      // The caching host allocator keeps the pinned block until the copy on this stream is done;
      // `flat` may be freed now (stream-ordered reuse on the device).
      HostCopy copy;
      copy.staging =
          torch::empty({bucket.own}, mine.options().device(torch::kCPU).pinned_memory(true));
      copy.staging.copy_(mine, /*non_blocking=*/true);
      copy.shard_offset = bucket.shard_offset;
      copy.landed.record(
          c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(mine.device()));
      host_copies_.push_back(std::move(copy));
    } else {
      grad_shard_.narrow(0, bucket.shard_offset, bucket.own)
          .add_(mine.to(grad_shard_.device(), torch::kFloat32));
    }
  }
  bucket.flat = torch::Tensor();
  bucket.received = torch::Tensor();
}

void ProcessGroupContext::drain_host_copies(bool wait) {
  while (!host_copies_.empty()) {
    HostCopy& copy = host_copies_.front();
    if (wait) {
      copy.landed.synchronize();
    } else if (!copy.landed.query()) {
      return;
    }
    grad_shard_.narrow(0, copy.shard_offset, copy.staging.numel())
        .add_(copy.staging);  // bf16 chunks widen in the add
    host_copies_.pop_front();
  }
}

void ProcessGroupContext::all_gather_shard(const torch::Tensor& shard,
                                           const std::vector<torch::Tensor>& targets) {
  POLAR_CHECK(options_.zero_stage > 0, "dist: all_gather_shard() needs zero_stage 1 or 2");
  POLAR_CHECK(shard.dim() == 1 && shard.numel() == layout_.numel,
              "dist: all_gather_shard() got a shard of ", shard.numel(),
              " elements, the layout has ", layout_.numel);
  POLAR_CHECK(targets.size() == params_.size(),
              "dist: all_gather_shard() needs one target per parameter (", params_.size(),
              "), got ", targets.size());
  const std::string what = "all-gather of the parameter shards";
  check_usable(what);
  if (!local_) mark_progress(what);
  torch::NoGradGuard no_grad;
  for (const auto& bucket : buckets_) gather_bucket(bucket, shard, targets);
}

void ProcessGroupContext::gather_bucket(const Bucket& bucket, const torch::Tensor& shard,
                                        const std::vector<torch::Tensor>& targets) {
  const int64_t world = env_.world_size;
  // Gathered in the targets' dtype on the process group's device (NCCL needs CUDA tensors).
  const auto options =
      torch::TensorOptions().dtype(targets[bucket.params.front()].scalar_type()).device(device_);
  torch::Tensor mine = torch::zeros({bucket.chunk}, options);
  if (bucket.own > 0) {
    const torch::Tensor part = shard.narrow(0, bucket.shard_offset, bucket.own);
    if (part.is_cpu() && device_.is_cuda() && !part.is_pinned()) {
      // Through a pinned buffer, asynchronously: the next bucket's host copy overlaps this DMA.
      torch::Tensor staging = torch::empty({bucket.own}, part.options().pinned_memory(true));
      staging.copy_(part);
      mine.narrow(0, 0, bucket.own).copy_(staging, /*non_blocking=*/true);
    } else {
      mine.narrow(0, 0, bucket.own).copy_(part);
    }
  }
  torch::Tensor gathered;
  if (local_) {
    gathered = mine;
  } else {
    gathered = torch::empty({bucket.chunk * world}, options);
    c10::intrusive_ptr<c10d::Work> work;
    ++collectives_;
    if (backend_name_ == "NCCL") {
      c10d::AllgatherOptions opts;
      opts.timeout = options_.timeout;
      work = backend_->_allgather_base(gathered, mine, opts);
    } else {
      std::vector<std::vector<torch::Tensor>> outputs(1);
      for (int64_t r = 0; r < world; ++r)
        outputs[0].push_back(gathered.narrow(0, r * bucket.chunk, bucket.chunk));
      std::vector<torch::Tensor> inputs{mine};
      c10d::AllgatherOptions opts;
      opts.timeout = options_.timeout;
      work = backend_->allgather(outputs, inputs, opts);
    }
    wait(work, fmt::format("all-gather of a parameter bucket ({} tensors)", bucket.params.size()));
  }
  for (size_t slot = 0; slot < bucket.params.size(); ++slot) {
    const auto& target = targets[bucket.params[slot]];
    POLAR_CHECK(target.numel() == params_[bucket.params[slot]].numel(),
                "dist: all_gather_shard() target ", bucket.params[slot], " has ", target.numel(),
                " elements, the parameter has ", params_[bucket.params[slot]].numel());
    target.view(-1).copy_(gathered.narrow(0, bucket.offsets[slot], target.numel()));
  }
}

}  // namespace polar::dist::detail
