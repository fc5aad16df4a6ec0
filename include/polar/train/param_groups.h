// How the optimizer treats each parameter, decided in one place from the
// parameter's (Hugging Face) name: weight decay only on the backbone's matrices
// (not on norms, biases, embeddings or the reward head, as TRL/OpenRLHF/xtuner
// do), and a learning-rate scale that separates the reward head from the
// backbone (train.head_lr_scale) and can hold the backbone still for the first
// train.probe_steps steps (a linear probe before fine-tuning).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "polar/config/train_config.h"

namespace polar {

enum class ParamRole { Matrix, NoDecay, Head };  // backbone matrix | norm, bias, embedding | head

struct ParamRule {
  ParamRole role = ParamRole::Matrix;
  double weight_decay = 0.0;
  double lr_scale = 1.0;  // the group's lr is the schedule's lr times this
};

// The optimizer's role of a parameter, from the model's own ParamKind (model/param_kind.h):
// matrices decay, embeddings, norms and biases do not, the head has its own lr scale.
ParamRole param_role(const std::string& name);

// Weight decay and lr scale of a parameter at optimizer step `step` (0-based).
ParamRule param_rule(const std::string& name, const TrainSection& train, int64_t step);

// One optimizer group per role present, in ParamRole order, each with its
// rule's weight decay.
struct ParamGroups {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  std::vector<ParamRole> roles;  // roles[i] is the role of groups[i]
};
ParamGroups build_param_groups(const torch::nn::Module& model, const TrainSection& train);

// Sets each group's lr to `lr` times its role's scale at `step`.
void apply_group_lrs(torch::optim::AdamW& optimizer, const std::vector<ParamRole>& roles,
                     const TrainSection& train, double lr, int64_t step);

// Per-group multipliers of the groups' own lr ratios at `step`: 0 for the backbone's groups
// during the first train.probe_steps steps (a linear probe), else 1.
std::vector<double> probe_group_scales(const std::vector<ParamRole>& roles,
                                       const TrainSection& train, int64_t step);

}  // namespace polar
