// CausalLM: the imported decoder (the reward model's layers) run incrementally
// with a KV cache through RewardModel::decode, plus the LM head.
#include "polar/sample/causal_lm.h"

#include <torch/torch.h>

#include <filesystem>

#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/hf.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/io/hf_layouts.h"
#include "polar/io/safetensors.h"

namespace polar::sample {

namespace fs = std::filesystem;
using torch::Tensor;

namespace {

// The LM head tensor of an HF directory, read from the file that holds it.
Tensor read_lm_head(const fs::path& dir, const char* name) {
  fs::path file = dir / "model.safetensors";
  if (!fs::exists(file)) {
    const fs::path index = dir / "model.safetensors.index.json";
    const auto j = read_json_file(index.string());
    const auto* map = j.contains("weight_map") ? &j["weight_map"] : nullptr;
    POLAR_CHECK(map && map->is_object() && map->contains(name) && (*map)[name].is_string(),
                index.string(), ": \"weight_map\" has no file for the LM head \"", name, "\"");
    file = dir / (*map)[name].get<std::string>();
  }
  const auto st = io::SafetensorsFile::open(file.string());
  POLAR_CHECK(st.contains(name), dir.string(), ": no LM head \"", name,
              "\" (a causal LM is needed for sampling; tie_word_embeddings is false)");
  return st.tensor(name);
}

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "fp32") return torch::kFloat;
  if (name == "bf16") return torch::kBFloat16;
  if (name == "fp16") return torch::kHalf;
  throw Error("dtype \"" + name + "\": expected fp32, bf16 or fp16");
}

}  // namespace

CausalLM CausalLM::load(const std::string& dir, const CausalLMOptions& options) {
  const torch::Device device(options.device);  // throws c10::Error on a malformed name
  POLAR_CHECK(!device.is_cuda() || torch::cuda::is_available(), dir, ": device \"", options.device,
              "\" asked for, but no CUDA device is available");
  const auto dtype = parse_dtype(options.dtype);
  POLAR_CHECK(fs::is_regular_file(fs::path(dir) / "config.json"), dir,
              ": not a Hugging Face model directory (no config.json)");
  const auto info = parse_hf_config(read_json_file((fs::path(dir) / "config.json").string()),
                                    dir + "/config.json");
  POLAR_CHECK(!info.has_reward_head, dir, ": ", info.architecture_class,
              " is a reward model; sampling needs a *ForCausalLM with an LM head");
  HfImportOptions import_options;
  import_options.tokenizer_dir = options.tokenizer_dir;
  import_options.language_model = true;  // a policy needs its own tokenizer, not POLAR's tokens
  LoadedModel lm = import_hf(dir, torch::kCPU, import_options);
  Tensor head;
  if (lm.shape.tie_embeddings) {
    head = lm.model->named_parameters()["model.embed_tokens.weight"].detach();
  } else {
    head = read_lm_head(dir, io::hf::layout_table(lm.shape.family().family).lm_head);
  }
  // Template tokens the import added (tokenizer.json) grew the embedding; the head grows alike.
  if (head.dim() == 2 && head.size(0) < lm.shape.vocab_size &&
      lm.tokenizer.template_choice().how == "added")
    head = grown_embedding(head, lm.shape.vocab_size);
  POLAR_CHECK(head.dim() == 2 && head.size(0) == lm.shape.vocab_size &&
                  head.size(1) == lm.shape.hidden_size,
              dir, ": the LM head has shape ", head.sizes(), ", expected (", lm.shape.vocab_size,
              ", ", lm.shape.hidden_size, ")");
  lm.model->to(device, dtype);
  lm.model->eval();
  return CausalLM(lm.model, head.to(device, dtype), lm.tokenizer);
}

CausalLM::CausalLM(RewardModel decoder, Tensor lm_head, Tokenizer tokenizer)
    : decoder_(std::move(decoder)), lm_head_(std::move(lm_head)), tokenizer_(std::move(tokenizer)) {
  const auto& c = config();
  POLAR_CHECK(
      lm_head_.dim() == 2 && lm_head_.size(0) == c.vocab_size && lm_head_.size(1) == c.hidden_size,
      "CausalLM: LM head ", lm_head_.sizes(), " does not match the embedding (", c.vocab_size, ", ",
      c.hidden_size, ")");
}

KvCache CausalLM::new_cache(int64_t batch, int64_t capacity) const {
  return decoder_->new_cache(batch, capacity);
}

Tensor CausalLM::step(const Tensor& tokens, const Tensor& positions, const Tensor& key_mask,
                      KvCache& cache) const {
  torch::NoGradGuard no_grad;
  const Tensor hidden = decoder_->decode(tokens, positions, key_mask, cache);      // (B, T, H)
  const Tensor last = decoder_->final_norm(hidden.select(1, hidden.size(1) - 1));  // (B, H)
  return torch::linear(last, lm_head_).to(torch::kFloat);                          // (B, V)
}

}  // namespace polar::sample
