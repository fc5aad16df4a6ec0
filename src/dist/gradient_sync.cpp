// Bucketed gradient all-reduce. Gradients are grouped into buckets in reverse parameter order
// (the order backward produces them); a hook on each parameter's gradient accumulator copies the
// gradient into its bucket, and a bucket whose gradients have all arrived is all-reduced at once,
// while backward is still computing the rest. Buckets are launched strictly in index order so
// that every rank issues the same sequence of collectives. Nothing happens on accumulation
// micro-steps: the hooks fire but return at once.
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "polar/common/error.h"
#include "process_group_context.h"

namespace polar::dist::detail {
namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// DDP's choice: a small first bucket so that communication starts early in backward.
constexpr int64_t kFirstBucketBytes = 1 << 20;

}  // namespace

void ProcessGroupContext::attach_gradients(const std::vector<torch::Tensor>& parameters) {
  std::lock_guard<std::mutex> lock(mutex_);
  POLAR_CHECK(params_.empty() && buckets_.empty(), "dist: attach_gradients() was called twice");
  for (const auto& p : parameters) {
    if (!p.requires_grad()) continue;
    POLAR_CHECK(p.is_leaf(), "dist: attach_gradients() needs leaf parameters");
    POLAR_CHECK(p.device().type() == device_.type(), "dist: parameter on ", p.device().str(),
                " but the ", backend_name_, " process group works on ", device_.str());
    params_.push_back(p);
  }

  bucket_of_.assign(params_.size(), 0);
  slot_of_.assign(params_.size(), 0);
  ready_.assign(params_.size(), 0);
  std::vector<int64_t> bucket_numel, bucket_bytes;
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    const int64_t bytes = static_cast<int64_t>(p.nbytes());
    bool fresh = buckets_.empty();
    if (!fresh) {
      const auto& first = params_[buckets_.back().params.front()];
      const int64_t cap = buckets_.size() == 1 ? std::min(kFirstBucketBytes, options_.bucket_bytes)
                                               : options_.bucket_bytes;
      fresh = first.scalar_type() != p.scalar_type() || first.device() != p.device() ||
              bucket_bytes.back() + bytes > cap;
    }
    if (fresh) {
      buckets_.emplace_back();
      bucket_numel.push_back(0);
      bucket_bytes.push_back(0);
    }
    Bucket& bucket = buckets_.back();
    bucket_of_[k] = buckets_.size() - 1;
    slot_of_[k] = bucket.params.size();
    bucket.params.push_back(k);
    bucket.offsets.push_back(bucket_numel.back());
    bucket_numel.back() += p.numel();
    bucket_bytes.back() += bytes;
  }
  for (size_t b = 0; b < buckets_.size(); ++b) {
    buckets_[b].numel = bucket_numel[b];
    // ZeRO allocates a bucket's buffer only while its round runs (that is its memory saving).
    if (options_.zero_stage > 0) continue;
    const auto& first = params_[buckets_[b].params.front()];
    buckets_[b].flat = torch::zeros({bucket_numel[b]}, first.options().requires_grad(false));
  }
  if (options_.zero_stage > 0) build_shard_layout();

  hook_link_ = std::make_shared<HookLink>();
  hook_link_->context = this;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto accumulator = torch::autograd::impl::grad_accumulator(params_[i]);
    POLAR_CHECK(accumulator != nullptr, "dist: parameter ", i, " has no gradient accumulator");
    accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [link = hook_link_, i](const torch::autograd::variable_list& outputs,
                               const torch::autograd::variable_list&) {
          std::lock_guard<std::mutex> guard(link->mutex);
          if (link->context != nullptr) link->context->on_gradient_ready(i);
          return outputs;
        }));
    grad_accumulators_.push_back(std::move(accumulator));
  }
}

void ProcessGroupContext::begin_micro_step(bool sync) {
  std::lock_guard<std::mutex> lock(mutex_);
  POLAR_CHECK(!syncing_ || options_.zero_stage == 2,
              "dist: begin_micro_step() was called before finish_step() of "
              "the step whose gradients are being synchronised");
  if (options_.zero_stage == 2) {
    // Every micro-step reduce-scatters: finish the previous micro-step's round first.
    if (syncing_) complete_round();
    start_sync();
    return;
  }
  if (sync) start_sync();
}

void ProcessGroupContext::start_sync() {
  const std::string label = rounds_done_ == 0 ? fmt::format("gradient sync of step {}", steps_ + 1)
                                              : fmt::format("gradient sync of step {} (round {})",
                                                            steps_, rounds_done_ + 1);
  check_usable(label);
  mark_progress(label);
  if (rounds_done_ == 0) ++steps_;
  std::fill(ready_.begin(), ready_.end(), 0);
  for (auto& bucket : buckets_) {
    bucket.pending = bucket.params.size();
    bucket.work.reset();
  }
  if (options_.zero_stage > 0 && rounds_done_ == 0) {
    drain_host_copies(true);  // copies of an abandoned round (an error in backward)
    grad_shard_.zero_();
  }
  next_bucket_ = 0;
  next_complete_ = 0;
  syncing_ = true;
}

void ProcessGroupContext::on_gradient_ready(size_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!syncing_ || ready_[index]) return;
  ready_[index] = 1;
  copy_gradient_into(index);
  if (--buckets_[bucket_of_[index]].pending == 0) launch_ready_buckets();
}

void ProcessGroupContext::copy_gradient_into(size_t index) {
  Bucket& bucket = buckets_[bucket_of_[index]];
  auto& param = params_[index];
  if (options_.zero_stage > 0) ensure_bucket_buffer(bucket);
  auto slice = bucket.flat.narrow(0, bucket.offsets[slot_of_[index]], param.numel());  // (numel,)
  const auto& grad = param.grad();
  if (grad.defined()) {
    POLAR_CHECK(!grad.is_sparse(), "dist: sparse gradients are not supported");
    slice.copy_(grad.reshape(-1));
    // ZeRO-2 keeps only the shard: the full gradient is dropped as soon as it is in a bucket.
    if (options_.zero_stage == 2) param.mutable_grad().reset();
  } else {
    slice.zero_();  // unused on this rank this step; other ranks may still contribute
  }
}

void ProcessGroupContext::launch_ready_buckets() {
  while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].pending == 0)
    launch_bucket(buckets_[next_bucket_++]);
  // ZeRO bounds its bucket memory: at most two buckets in flight, older ones are folded into
  // the shard and freed (this waits inside backward, as DeepSpeed's bucketed reduce does).
  while (options_.zero_stage > 0 && next_complete_ + 2 < next_bucket_) {
    complete_bucket(buckets_[next_complete_],
                    fmt::format("reduce-scatter of gradient bucket {}", next_complete_ + 1));
    ++next_complete_;
  }
}

void ProcessGroupContext::launch_bucket(Bucket& bucket) {
  check_usable("gradient all-reduce");
  bucket.launched_at = Clock::now();
  bucket.completed_ns = std::make_shared<std::atomic<int64_t>>(0);
  bucket.work =
      options_.zero_stage > 0 ? start_reduce_scatter(bucket) : start_all_reduce(bucket.flat);
  if (!bucket.work) {
    bucket.completed_ns->store(now_ns());  // no process group: nothing to wait for
    return;
  }
  bucket.work->getFuture()->addCallback(
      [done = bucket.completed_ns](c10::ivalue::Future&) { done->store(now_ns()); });
}

void ProcessGroupContext::finish_step(int64_t rounds) {
  std::lock_guard<std::mutex> lock(mutex_);
  // A rank that ran no micro-step this step (or only accumulation ones) still has to take part
  // in every bucket's collective: it contributes the gradients it holds, or zeros.
  if (!syncing_ && (options_.zero_stage < 2 || rounds_done_ == 0)) start_sync();
  if (syncing_) complete_round();
  // ZeRO-2: a rank with fewer micro-steps than the busiest one joins the remaining rounds.
  while (options_.zero_stage == 2 && rounds_done_ < rounds) {
    start_sync();
    complete_round();
  }
  rounds_done_ = 0;
}

void ProcessGroupContext::complete_round() {
  syncing_ = false;
  const auto finish_started = Clock::now();
  // Parameters whose hook did not fire (unused in this rank's graph) join with what they hold.
  for (size_t b = next_bucket_; b < buckets_.size(); ++b) {
    for (size_t i : buckets_[b].params) {
      if (ready_[i]) continue;
      ready_[i] = 1;
      copy_gradient_into(i);
      --buckets_[b].pending;
    }
  }
  launch_ready_buckets();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const std::string what = fmt::format(
        "{} of gradient bucket {}/{} ({} tensors, {:.2f} MB) in step {}",
        options_.zero_stage > 0 ? "reduce-scatter" : "all-reduce", b + 1, buckets_.size(),
        buckets_[b].params.size(),
        buckets_[b].numel * params_[buckets_[b].params.front()].element_size() / 1048576.0, steps_);
    if (options_.zero_stage > 0) {
      if (b >= next_complete_) complete_bucket(buckets_[b], what);
    } else {
      wait(buckets_[b].work, what);
    }
  }
  drain_host_copies(true);
  record_comm_times(finish_started, Clock::now());
  ++rounds_done_;
  if (options_.zero_stage > 0) return;  // complete_bucket() folded every chunk into the shard

  torch::NoGradGuard no_grad;
  for (auto& bucket : buckets_) {
    for (size_t slot = 0; slot < bucket.params.size(); ++slot) {
      auto& param = params_[bucket.params[slot]];
      auto summed = bucket.flat.narrow(0, bucket.offsets[slot], param.numel()).view(param.sizes());
      auto& grad = param.mutable_grad();
      if (grad.defined()) {
        grad.copy_(summed);
      } else {
        grad = summed.clone();
      }
    }
    bucket.work.reset();
  }
}

void ProcessGroupContext::record_comm_times(Clock::time_point finish_started,
                                            Clock::time_point waited) {
  // Communication time is the union of the buckets' [launch, completion] intervals; the part
  // after backward ended is what the step waited for (exposed).
  std::vector<std::pair<int64_t, int64_t>> intervals;
  const int64_t waited_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(waited.time_since_epoch()).count();
  for (auto& bucket : buckets_) {
    if (!bucket.completed_ns) continue;
    // The completion callback runs just after the Work completes; give it a moment.
    for (int spin = 0; spin < 1000 && bucket.completed_ns->load() == 0; ++spin)
      std::this_thread::yield();
    const int64_t done = bucket.completed_ns->load();
    const int64_t start =
        std::chrono::duration_cast<std::chrono::nanoseconds>(bucket.launched_at.time_since_epoch())
            .count();
    intervals.emplace_back(start, done == 0 ? waited_ns : std::min(done, waited_ns));
  }
  std::sort(intervals.begin(), intervals.end());
  int64_t total_ns = 0, covered_until = 0;
  for (const auto& [start, end] : intervals) {
    const int64_t from = std::max(start, covered_until);
    if (end > from) total_ns += end - from;
    covered_until = std::max(covered_until, end);
  }
  total_seconds_ = total_ns * 1e-9;
  // Launching left-over buckets and waking up count as waiting too, but never more than the
  // communication itself took.
  exposed_seconds_ =
      std::min(total_seconds_, std::chrono::duration<double>(waited - finish_started).count());
}

}  // namespace polar::dist::detail
