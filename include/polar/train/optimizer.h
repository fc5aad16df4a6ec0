// The optimizer of a training run behind one interface, so that the train step does not care
// how the state is laid out:
//   ReplicatedAdamW  train.zero 0: torch::optim::AdamW on every rank (gradients all-reduced)
//   ShardedAdamW     train.zero 1|2: each rank keeps fp32 master weights and AdamW state for its
//                    shard only (dist::ShardLayout), updates them from its gradient shard and
//                    all-gathers the updated parameters; with train.offload_optimizer the
//                    master weights and state live in (pinned) host memory and the update runs
//                    on the CPU, in one fused pass per chunk (ATen's _fused_adamw_).
// Both follow the parameter groups of the torch::optim::AdamW they are built from (per-parameter
// weight decay and learning-rate ratio to train.lr), and compute AdamW exactly as LibTorch does.
#pragma once

#include <torch/optim/adamw.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "polar/dist/dist.h"

namespace polar {

class TrainOptimizer {
 public:
  virtual ~TrainOptimizer() = default;
  virtual void zero_grad() = 0;
  // Global L2 norm of the step's summed gradient (all ranks); scales the gradient down to
  // max_norm when it is larger (torch's clip_grad_norm_ rule). Returns the norm before clipping.
  virtual double clip_grad_norm(double max_norm) = 0;
  // `lr` is the schedule's value for train.lr; each parameter uses lr times its group's ratio,
  // times group_scales[group] when given (one per AdamW group; a linear probe holds groups still).
  virtual void step(double lr, const std::vector<double>& group_scales = {}) = 0;
  // Checkpoints. save() is called by every rank with the checkpoint's staging directory (shared
  // by all ranks); load() by every rank with a complete checkpoint. Both may communicate.
  virtual void save(const std::string& staging_dir) = 0;
  virtual void load(const std::string& checkpoint_dir) = 0;
  // Bytes this rank holds for master weights and optimizer state (for the memory report).
  virtual int64_t state_bytes() const = 0;
};

struct ParamHyper {
  double weight_decay = 0;
  double lr_scale = 1;  // the group's lr / train.lr
  size_t group = 0;     // the AdamW group (the index into step()'s group_scales)
};

// Per-parameter hyper-parameters (in `params` order) from an AdamW's parameter groups; `base_lr`
// is train.lr. Every parameter must belong to exactly one group.
std::vector<ParamHyper> param_hypers(torch::optim::AdamW& adamw,
                                     const std::vector<torch::Tensor>& params, double base_lr);

std::unique_ptr<TrainOptimizer> make_replicated_adamw(std::unique_ptr<torch::optim::AdamW> adamw,
                                                      std::shared_ptr<dist::Context> ctx,
                                                      double base_lr);

struct ShardedAdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  bool offload = false;  // master weights and AdamW state on the CPU (pinned when CUDA is used)
};

// `ctx` must have been created with zero_stage 1 or 2 and have `params` attached.
std::unique_ptr<TrainOptimizer> make_sharded_adamw(std::shared_ptr<dist::Context> ctx,
                                                   std::vector<torch::Tensor> params,
                                                   std::vector<ParamHyper> hypers,
                                                   const ShardedAdamWOptions& options);

// The run's optimizer from train.zero / train.offload_optimizer, following `adamw`'s groups.
// With zero > 0, `ctx` must have been created with that zero_stage and have `params` attached.
struct TrainSection;
std::unique_ptr<TrainOptimizer> make_train_optimizer(const TrainSection& train,
                                                     std::unique_ptr<torch::optim::AdamW> adamw,
                                                     std::shared_ptr<dist::Context> ctx,
                                                     const std::vector<torch::Tensor>& params);

// Name of rank `rank`'s optimizer shard file inside a checkpoint written by `world` ranks.
std::string optimizer_shard_file(int rank, int world);

}  // namespace polar
