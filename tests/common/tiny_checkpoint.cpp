#include "common/tiny_checkpoint.h"

#include <torch/torch.h>

#include "common/tiny_data.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/config/train_config.h"

namespace polar::testing {

ModelConfig tiny_checkpoint_shape() {
  ModelConfig s;
  s.vocab_size = 320;
  s.hidden_size = 32;
  s.num_layers = 1;
  s.num_heads = 4;
  s.num_kv_heads = 2;
  s.intermediate_size = 64;
  s.max_position = 512;
  return s;
}

std::string write_tiny_checkpoint(const std::string& dir, bool training,
                                  const std::function<void(RewardModel&)>& edit) {
  RewardModel model(tiny_checkpoint_shape());
  model->reset_parameters(1);
  if (edit) {
    torch::NoGradGuard no_grad;
    edit(model);
  }
  const Tokenizer tok = Tokenizer::load(tiny_tokenizer_dir());
  TrainConfig cfg;
  cfg.model.shape = tiny_checkpoint_shape();
  const nlohmann::json config = cfg.to_json();
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-3));
  TrainerState state;
  state.step = 3;
  save_checkpoint(
      dir, {&model, &tok, &config, training ? &opt : nullptr, training ? &state : nullptr, {}});
  return dir;
}

}  // namespace polar::testing
