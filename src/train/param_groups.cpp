#include "polar/train/param_groups.h"

#include "polar/model/param_kind.h"

namespace polar {

namespace {

ParamRule rule_for_role(ParamRole role, const TrainSection& train, int64_t step) {
  ParamRule r;
  r.role = role;
  r.weight_decay = role == ParamRole::Matrix ? train.weight_decay : 0.0;
  const bool probing = step < train.probe_steps;
  if (role == ParamRole::Head)
    r.lr_scale = train.head_lr_scale;
  else
    r.lr_scale = probing ? 0.0 : 1.0;
  return r;
}

}  // namespace

ParamRole param_role(const std::string& name) {
  switch (param_kind(name)) {
    case ParamKind::Head:
      return ParamRole::Head;
    case ParamKind::Matrix:
    case ParamKind::Adapter:  // decayed like the matrices they adapt (as peft and TRL do)
      return ParamRole::Matrix;
    case ParamKind::Embedding:
    case ParamKind::Norm:
    case ParamKind::Bias:
      break;
  }
  return ParamRole::NoDecay;
}

ParamRule param_rule(const std::string& name, const TrainSection& train, int64_t step) {
  return rule_for_role(param_role(name), train, step);
}

ParamGroups build_param_groups(const torch::nn::Module& model, const TrainSection& train) {
  std::vector<torch::Tensor> by_role[3];
  for (const auto& item : model.named_parameters())
    if (item.value().requires_grad())  // frozen (a LoRA base): no optimizer state
      by_role[static_cast<int>(param_role(item.key()))].push_back(item.value());
  ParamGroups out;
  for (ParamRole role : {ParamRole::Matrix, ParamRole::NoDecay, ParamRole::Head}) {
    auto& params = by_role[static_cast<int>(role)];
    if (params.empty()) continue;
    auto options = std::make_unique<torch::optim::AdamWOptions>(train.lr);
    options->betas({train.beta1, train.beta2})
        .eps(train.eps)
        .weight_decay(rule_for_role(role, train, 0).weight_decay);
    out.groups.emplace_back(params, std::move(options));
    out.roles.push_back(role);
  }
  return out;
}

void apply_group_lrs(torch::optim::AdamW& optimizer, const std::vector<ParamRole>& roles,
                     const TrainSection& train, double lr, int64_t step) {
  auto& groups = optimizer.param_groups();
  for (size_t i = 0; i < groups.size() && i < roles.size(); ++i) {
    auto& options = static_cast<torch::optim::AdamWOptions&>(groups[i].options());
    options.lr(lr * rule_for_role(roles[i], train, step).lr_scale);
  }
}

std::vector<double> probe_group_scales(const std::vector<ParamRole>& roles,
                                       const TrainSection& train, int64_t step) {
  std::vector<double> scales(roles.size(), 1.0);
  if (step >= train.probe_steps) return scales;
  for (size_t i = 0; i < roles.size(); ++i)
    if (roles[i] != ParamRole::Head) scales[i] = 0.0;
  return scales;
}

}  // namespace polar
