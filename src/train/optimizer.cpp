// ReplicatedAdamW (train.zero 0) and ShardedAdamW (ZeRO-1/2, optional host offload); see
// polar/train/optimizer.h. Sharded checkpoints: src/train/optimizer_shards.cpp.
#include "polar/train/optimizer.h"

#include <ATen/ops/_fused_adamw.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <unordered_map>

#include "optimizer_shards.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/common/error.h"
#include "polar/config/train_config.h"

namespace fs = std::filesystem;

namespace polar {

std::vector<ParamHyper> param_hypers(torch::optim::AdamW& adamw,
                                     const std::vector<torch::Tensor>& params, double base_lr) {
  std::unordered_map<const void*, ParamHyper> by_param;
  const auto& groups = adamw.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(groups[g].options());
    for (const auto& p : groups[g].params())
      by_param[p.unsafeGetTensorImpl()] = ParamHyper{o.weight_decay(), o.lr() / base_lr, g};
  }
  std::vector<ParamHyper> out;
  for (const auto& p : params) {
    auto it = by_param.find(p.unsafeGetTensorImpl());
    POLAR_CHECK(it != by_param.end(),
                "optimizer: a trained parameter belongs to no AdamW parameter group");
    out.push_back(it->second);
  }
  return out;
}

std::string optimizer_shard_file(int rank, int world) {
  return fmt::format("optimizer-shard-{:05d}-of-{:05d}.pt", rank, world);
}

namespace {

class ReplicatedAdamW final : public TrainOptimizer {
 public:
  ReplicatedAdamW(std::unique_ptr<torch::optim::AdamW> adamw, std::shared_ptr<dist::Context> ctx,
                  double base_lr)
      : adamw_(std::move(adamw)), ctx_(std::move(ctx)) {
    for (auto& group : adamw_->param_groups()) {
      lr_scales_.push_back(static_cast<torch::optim::AdamWOptions&>(group.options()).lr() /
                           base_lr);
      for (const auto& p : group.params()) params_.push_back(p);
    }
  }
  void zero_grad() override { adamw_->zero_grad(true); }
  double clip_grad_norm(double max_norm) override {
    return torch::nn::utils::clip_grad_norm_(params_, max_norm);
  }
  void step(double lr, const std::vector<double>& group_scales) override {
    auto& groups = adamw_->param_groups();
    for (size_t g = 0; g < groups.size(); ++g) {
      const double scale = g < group_scales.size() ? group_scales[g] : 1.0;
      static_cast<torch::optim::AdamWOptions&>(groups[g].options()).lr(lr * lr_scales_[g] * scale);
    }
    fused_step();
  }

  // ATen's fused multi-tensor AdamW (on CUDA a few launches for all parameters, on the CPU one
  // pass over each parameter's memory, instead of about ten ops per parameter), the same update to
  // rounding, on the state torch::optim::AdamW keeps (so checkpoints and resuming are unchanged).
  void fused_step() {
    torch::NoGradGuard no_grad;
    for (auto& group : adamw_->param_groups()) {
      const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
      POLAR_CHECK(!o.amsgrad(), "optimizer: amsgrad is not supported");
      std::vector<torch::Tensor> p, g, m, v, steps;
      for (auto& param : group.params()) {
        if (!param.grad().defined()) continue;
        auto& state = adamw_->state()[param.unsafeGetTensorImpl()];
        if (!state) {
          auto fresh = std::make_unique<torch::optim::AdamWParamState>();
          fresh->step(0);
          fresh->exp_avg(torch::zeros_like(param, torch::MemoryFormat::Preserve));
          fresh->exp_avg_sq(torch::zeros_like(param, torch::MemoryFormat::Preserve));
          state = std::move(fresh);
        }
        auto& s = static_cast<torch::optim::AdamWParamState&>(*state);
        s.step(s.step() + 1);
        p.push_back(param);
        g.push_back(param.grad());
        m.push_back(s.exp_avg());
        v.push_back(s.exp_avg_sq());
        steps.push_back(step_tensor(s.step(), param.device()));
      }
      if (p.empty()) continue;
      at::_fused_adamw_(p, g, m, v, {}, steps, o.lr(), std::get<0>(o.betas()),
                        std::get<1>(o.betas()), o.weight_decay(), o.eps(), /*amsgrad=*/false,
                        /*maximize=*/false);
    }
  }

  // One device scalar per step count (all parameters usually share it).
  torch::Tensor step_tensor(int64_t step, const torch::Device& device) {
    if (!step_value_.defined() || step_count_ != step || step_value_.device() != device) {
      step_value_ = torch::full({}, static_cast<double>(step),
                                torch::TensorOptions().dtype(torch::kFloat32).device(device));
      step_count_ = step;
    }
    return step_value_;
  }
  void save(const std::string& staging_dir) override {
    if (!ctx_->is_main()) return;  // every rank holds the same state
    torch::serialize::OutputArchive archive;
    adamw_->save(archive);
    const fs::path path = fs::path(staging_dir) / "optimizer.pt";
    archive.save_to(path.string() + ".part");
    fs::rename(path.string() + ".part", path);
  }
  void load(const std::string& checkpoint_dir) override {
    POLAR_CHECK(!has_optimizer_shards(checkpoint_dir), checkpoint_dir,
                ": the optimizer state is sharded (written with train.zero 1 or 2); resume with "
                "train.zero 1 or 2");
    load_optimizer_state(*adamw_, checkpoint_dir);
  }
  int64_t state_bytes() const override {
    int64_t n = 0;
    for (const auto& [key, state] : adamw_->state()) {
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*state);
      n += static_cast<int64_t>(s.exp_avg().nbytes() + s.exp_avg_sq().nbytes());
    }
    return n;
  }

 private:
  std::unique_ptr<torch::optim::AdamW> adamw_;
  std::shared_ptr<dist::Context> ctx_;
  std::vector<double> lr_scales_;
  std::vector<torch::Tensor> params_;
  torch::Tensor step_value_;
  int64_t step_count_ = -1;
};

constexpr int64_t kUpdateChunk = 1 << 22;  // memory_plan.cpp assumes the same

// A run of consecutive shard elements with the same hyper-parameters.
struct Run {
  int64_t offset = 0, length = 0;
  ParamHyper hyper;
};

class ShardedAdamW final : public TrainOptimizer {
 public:
  ShardedAdamW(std::shared_ptr<dist::Context> ctx, std::vector<torch::Tensor> params,
               std::vector<ParamHyper> hypers, const ShardedAdamWOptions& options)
      : ctx_(std::move(ctx)), params_(std::move(params)), options_(options) {
    POLAR_CHECK(hypers.size() == params_.size(), "optimizer: ", hypers.size(),
                " hyper-parameter sets for ", params_.size(), " parameters");
    const auto& layout = ctx_->shard_layout();
    const torch::Device device =
        options.offload ? torch::Device(torch::kCPU) : params_.front().device();
    const auto fp32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
    // Offloaded, all of it is pageable host memory (16 bytes a parameter with the gradient shard):
    // the all-gather stages the master weights through small pinned buffers.
    state_.master = torch::empty({layout.numel}, fp32);
    state_.exp_avg = torch::zeros({layout.numel}, fp32);
    state_.exp_avg_sq = torch::zeros({layout.numel}, fp32);
    torch::NoGradGuard no_grad;
    for (const auto& piece : layout.pieces) {
      state_.master.narrow(0, piece.shard_offset, piece.length)
          .copy_(params_[piece.param].detach().reshape(-1).narrow(0, piece.param_offset,
                                                                  piece.length));
      const ParamHyper& h = hypers[piece.param];
      if (!runs_.empty() && runs_.back().offset + runs_.back().length == piece.shard_offset &&
          runs_.back().hyper.weight_decay == h.weight_decay &&
          runs_.back().hyper.lr_scale == h.lr_scale && runs_.back().hyper.group == h.group) {
        runs_.back().length += piece.length;
      } else {
        runs_.push_back(Run{piece.shard_offset, piece.length, h});
      }
    }
    split_runs();
  }

  // At most kUpdateChunk elements per update, which bounds the temporaries of the AdamW
  // expression (and keeps the CPU update cache-friendly when offloaded).
  void split_runs() {
    std::vector<Run> split;
    for (const auto& run : runs_) {
      for (int64_t at = 0; at < run.length; at += kUpdateChunk)
        split.push_back(Run{run.offset + at, std::min(kUpdateChunk, run.length - at), run.hyper});
    }
    runs_ = std::move(split);
  }

  void zero_grad() override {
    for (auto& p : params_) p.mutable_grad().reset();
  }

  double clip_grad_norm(double max_norm) override {
    torch::Tensor grad = ctx_->gradient_shard();
    const double local = grad.numel() > 0 ? grad.norm(2).item<double>() : 0.0;
    std::vector<double> sum{local * local};
    ctx_->all_reduce_sum(sum);
    const double total = std::sqrt(sum[0]);
    const double coef = max_norm / (total + 1e-6);  // torch's clip_grad_norm_ rule
    if (std::isfinite(total) && coef < 1) grad.mul_(coef);
    return total;
  }

  // AdamW on the shard: exactly as torch::optim::AdamW::step computes it (state on the CPU), or
  // ATen's fused kernel (offloaded or on CUDA), the same update to rounding.
  void step(double lr, const std::vector<double>& group_scales) override {
    group_scales_ = group_scales;
    torch::NoGradGuard no_grad;
    ++state_.step;
    torch::Tensor grad = ctx_->gradient_shard();
    if (grad.device() != state_.master.device()) grad = grad.to(state_.master.device());
    const auto t0 = std::chrono::steady_clock::now();
    if (options_.offload || state_.master.is_cuda()) {
      update_fused(grad, lr);
    } else {
      update_reference(grad, lr);
    }
    const auto t1 = std::chrono::steady_clock::now();
    ctx_->all_gather_shard(state_.master, params_);
    if (options_.offload && state_.step <= 3) {  // the host side of an offloaded step, for tuning
      const auto seconds = [](auto a, auto b) {
        return std::chrono::duration<double>(b - a).count();
      };
      spdlog::info(
          "optimizer: offloaded step {}: host update of {} elements {:.2f} s, parameters back "
          "{:.2f} s",
          state_.step, state_.master.numel(), seconds(t0, t1),
          seconds(t1, std::chrono::steady_clock::now()));
    }
  }

  // One pass over memory per run: ATen's fused AdamW kernel (the same update; it reads the step
  // count from a tensor). Used offloaded (bound by host memory bandwidth) and on CUDA.
  void update_fused(const torch::Tensor& grad, double lr) {
    const torch::Tensor step =
        torch::full({}, static_cast<double>(state_.step),
                    torch::TensorOptions().dtype(torch::kFloat32).device(grad.device()));
    for (const auto& run : runs_) {
      at::_fused_adamw_({state_.master.narrow(0, run.offset, run.length)},
                        {grad.narrow(0, run.offset, run.length)},
                        {state_.exp_avg.narrow(0, run.offset, run.length)},
                        {state_.exp_avg_sq.narrow(0, run.offset, run.length)}, {}, {step},
                        run_lr(run, lr), options_.beta1, options_.beta2, run.hyper.weight_decay,
                        options_.eps, /*amsgrad=*/false, /*maximize=*/false);
    }
  }

  // The run's learning rate: its group's ratio to train.lr, times the step's scale for the group.
  double run_lr(const Run& run, double lr) const {
    const double scale =
        run.hyper.group < group_scales_.size() ? group_scales_[run.hyper.group] : 1.0;
    return lr * run.hyper.lr_scale * scale;
  }

  void update_reference(const torch::Tensor& grad, double lr) {
    const double bias_correction1 = 1 - std::pow(options_.beta1, static_cast<double>(state_.step));
    const double bias_correction2 = 1 - std::pow(options_.beta2, static_cast<double>(state_.step));
    for (const auto& run : runs_) {
      auto p = state_.master.narrow(0, run.offset, run.length);
      auto m = state_.exp_avg.narrow(0, run.offset, run.length);
      auto v = state_.exp_avg_sq.narrow(0, run.offset, run.length);
      auto g = grad.narrow(0, run.offset, run.length);
      const double lr_run = run_lr(run, lr);
      if (run.hyper.weight_decay != 0) p.mul_(1 - lr_run * run.hyper.weight_decay);
      m.mul_(options_.beta1).add_(g, 1 - options_.beta1);
      v.mul_(options_.beta2).addcmul_(g, g, 1 - options_.beta2);
      auto denom = (v.sqrt() / std::sqrt(bias_correction2)).add_(options_.eps);
      p.addcdiv_(m, denom, -lr_run / bias_correction1);
    }
  }

  void save(const std::string& staging_dir) override {
    write_optimizer_shard(staging_dir, ctx_->rank(), ctx_->world_size(), ctx_->shard_layout(),
                          params_, state_);
  }

  void load(const std::string& checkpoint_dir) override {
    read_optimizer_shards(checkpoint_dir, ctx_->shard_layout(), params_, state_);
    ctx_->all_gather_shard(state_.master, params_);  // the master weights are the truth
  }

  int64_t state_bytes() const override {
    return static_cast<int64_t>(state_.master.nbytes() + state_.exp_avg.nbytes() +
                                state_.exp_avg_sq.nbytes());
  }

 private:
  std::shared_ptr<dist::Context> ctx_;
  std::vector<torch::Tensor> params_;
  ShardedAdamWOptions options_;
  ShardState state_;
  std::vector<Run> runs_;
  std::vector<double> group_scales_;  // this step's, one per AdamW group (empty: all 1)
};

}  // namespace

std::unique_ptr<TrainOptimizer> make_replicated_adamw(std::unique_ptr<torch::optim::AdamW> adamw,
                                                      std::shared_ptr<dist::Context> ctx,
                                                      double base_lr) {
  return std::make_unique<ReplicatedAdamW>(std::move(adamw), std::move(ctx), base_lr);
}

std::unique_ptr<TrainOptimizer> make_sharded_adamw(std::shared_ptr<dist::Context> ctx,
                                                   std::vector<torch::Tensor> params,
                                                   std::vector<ParamHyper> hypers,
                                                   const ShardedAdamWOptions& options) {
  return std::make_unique<ShardedAdamW>(std::move(ctx), std::move(params), std::move(hypers),
                                        options);
}

std::unique_ptr<TrainOptimizer> make_train_optimizer(const TrainSection& train,
                                                     std::unique_ptr<torch::optim::AdamW> adamw,
                                                     std::shared_ptr<dist::Context> ctx,
                                                     const std::vector<torch::Tensor>& params) {
  if (train.zero == 0) return make_replicated_adamw(std::move(adamw), std::move(ctx), train.lr);
  ShardedAdamWOptions options;
  options.beta1 = train.beta1;
  options.beta2 = train.beta2;
  options.eps = train.eps;
  options.offload = train.offload_optimizer;
  auto hypers = param_hypers(*adamw, params, train.lr);
  return make_sharded_adamw(std::move(ctx), params, std::move(hypers), options);
}

}  // namespace polar
