// What each parameter of the reward model is, decided in one place from its (Hugging Face) name,
// as LlamaForSequenceClassification names them: "score.weight" (the head),
// "model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight",
// "...q_proj.bias", "...q_proj.weight". Initialisation (model), weight dtypes (model) and the
// optimizer's parameter groups (train/param_groups.h) all read it from here.
#pragma once

#include <string>

namespace polar {

enum class ParamKind {
  Matrix,     // a projection's weight (attention, MLP)
  Embedding,  // the token embedding
  Norm,       // an RMSNorm weight
  Bias,       // a projection's bias
  Head,       // the reward head
  Adapter,    // a LoRA matrix (".lora_A." / ".lora_B."; model/lora.h)
};

ParamKind param_kind(const std::string& name);

}  // namespace polar
