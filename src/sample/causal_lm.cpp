// CausalLM: the imported decoder run incrementally with a KV cache, plus the LM
// head. The numerics follow transformers' Llama/Qwen2 modules (and the reward
// model's): RMSNorm in fp32, RoPE angles in fp32 cast to the model dtype, SDPA
// with grouped-query heads repeated.
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

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  const auto compute = x.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  const Tensor xf = x.to(compute);
  const Tensor normed = xf * torch::rsqrt(xf.square().mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

Tensor rotate_half(const Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  return b.defined() ? torch::linear(x, w, b) : torch::linear(x, w);
}

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
  const auto info = io::parse_hf_config(read_json_file((fs::path(dir) / "config.json").string()),
                                        dir + "/config.json");
  POLAR_CHECK(!info.has_reward_head, dir, ": ", info.architecture_class,
              " is a reward model; sampling needs a *ForCausalLM with an LM head");
  io::HfImportOptions import_options;
  import_options.tokenizer_dir = options.tokenizer_dir;
  import_options.language_model = true;  // a policy needs its own tokenizer, not POLAR's tokens
  LoadedModel lm = io::import_hf(dir, torch::kCPU, import_options);
  Tensor head;
  if (lm.shape.tie_embeddings) {
    head = lm.model->named_parameters()["model.embed_tokens.weight"].detach();
  } else {
    head = read_lm_head(dir, io::hf::layout_table(lm.shape.family().family).lm_head);
  }
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
  auto params = decoder_->named_parameters();
  auto get = [&](const std::string& name) {
    return params.contains(name) ? params[name].detach() : Tensor();
  };
  embed_ = get("model.embed_tokens.weight");
  final_norm_ = get("model.norm.weight");
  for (int64_t i = 0; i < config().num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    layers_.push_back({get(p + "self_attn.q_proj.weight"), get(p + "self_attn.k_proj.weight"),
                       get(p + "self_attn.v_proj.weight"), get(p + "self_attn.o_proj.weight"),
                       get(p + "self_attn.q_proj.bias"), get(p + "self_attn.k_proj.bias"),
                       get(p + "self_attn.v_proj.bias"), get(p + "mlp.gate_proj.weight"),
                       get(p + "mlp.up_proj.weight"), get(p + "mlp.down_proj.weight"),
                       get(p + "input_layernorm.weight"),
                       get(p + "post_attention_layernorm.weight")});
  }
  POLAR_CHECK(lm_head_.sizes() == embed_.sizes(), "CausalLM: LM head ", lm_head_.sizes(),
              " does not match the embedding ", embed_.sizes());
}

KvCache CausalLM::new_cache(int64_t batch, int64_t capacity) const {
  const auto& c = config();
  KvCache cache;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    cache.keys.push_back(
        torch::zeros({batch, c.num_kv_heads, capacity, c.head_dim()}, embed_.options()));
    cache.values.push_back(torch::zeros_like(cache.keys.back()));
  }
  return cache;
}

Tensor CausalLM::layer_forward(const LayerWeights& w, const Tensor& x, const Tensor& cos,
                               const Tensor& sin, const Tensor& mask, KvCache& cache,
                               size_t layer) const {
  const auto& c = config();
  const int64_t B = x.size(0), T = x.size(1), D = c.head_dim();
  const Tensor h = rms_norm(x, w.input_norm, c.rms_eps);
  const Tensor q = linear(h, w.q, w.q_bias).view({B, T, c.num_heads, D});
  const Tensor k = linear(h, w.k, w.k_bias).view({B, T, c.num_kv_heads, D});
  const Tensor v = linear(h, w.v, w.v_bias).view({B, T, c.num_kv_heads, D});
  const Tensor qr = (q * cos + rotate_half(q) * sin).transpose(1, 2);  // (B, Hq, T, D)
  const Tensor kr = (k * cos + rotate_half(k) * sin).transpose(1, 2);  // (B, Hkv, T, D)
  const int64_t start = cache.length, total = cache.length + T;
  cache.keys[layer].narrow(2, start, T).copy_(kr);
  cache.values[layer].narrow(2, start, T).copy_(v.transpose(1, 2));
  Tensor keys = cache.keys[layer].narrow(2, 0, total),
         values = cache.values[layer].narrow(2, 0, total);
  const int64_t rep = c.num_heads / c.num_kv_heads;
  if (rep > 1) {  // query head h reads kv head h / rep, as HF repeat_kv
    keys = keys.repeat_interleave(rep, 1);
    values = values.repeat_interleave(rep, 1);
  }
  const Tensor attn = torch::scaled_dot_product_attention(qr, keys, values, mask);  // (B, Hq, T, D)
  const Tensor out = x + torch::linear(attn.transpose(1, 2).reshape({B, T, c.hidden_size}), w.o);
  const Tensor m = rms_norm(out, w.post_norm, c.rms_eps);
  return out +
         torch::linear(torch::silu(torch::linear(m, w.gate)) * torch::linear(m, w.up), w.down);
}

Tensor CausalLM::step(const Tensor& tokens_in, const Tensor& positions_in,
                      const Tensor& key_mask_in, KvCache& cache) const {
  torch::NoGradGuard no_grad;
  const auto& c = config();
  const auto device = embed_.device();
  const int64_t B = tokens_in.size(0), T = tokens_in.size(1), total = cache.length + T,
                D = c.head_dim();
  POLAR_CHECK(total <= cache.capacity(), "CausalLM: KV cache of ", cache.capacity(),
              " positions is full");
  POLAR_CHECK(key_mask_in.size(0) == B && key_mask_in.size(1) == total,
              "CausalLM: key_mask must be (", B, ", ", total, "), got ", key_mask_in.sizes());
  if (tokens_in.numel() > 0) {
    const auto lo = tokens_in.min().item<int64_t>(), hi = tokens_in.max().item<int64_t>();
    POLAR_CHECK(lo >= 0 && hi < c.vocab_size, "CausalLM: token ids must be in [0, ", c.vocab_size,
                ")");
  }
  const Tensor tokens = tokens_in.to(device), positions = positions_in.to(device);
  const Tensor key_mask = key_mask_in.to(device, torch::kBool);
  // RoPE as the reward model and HF compute it: fp32 angles, cos/sin in the
  // model dtype.
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(device);
  const Tensor exponents =
      torch::arange(0, D, 2, f32.dtype(torch::kInt64)).to(torch::kFloat) / static_cast<double>(D);
  const Tensor inv_freq = 1.0 / torch::pow(c.rope_theta, exponents) / c.rope_scaling;  // (D/2)
  const Tensor freqs = positions.to(torch::kFloat).unsqueeze(-1) * inv_freq;  // (B, T, D/2)
  const Tensor angles = torch::cat({freqs, freqs}, -1).unsqueeze(2);          // (B, T, 1, D)
  const Tensor cos = angles.cos().to(embed_.scalar_type()),
               sin = angles.sin().to(embed_.scalar_type());
  // Query i (absolute position start + i) sees real keys up to itself; a
  // padding query sees itself too, so no row is empty (an empty row would turn
  // softmax into NaN).
  const auto bool_opts = torch::TensorOptions().dtype(torch::kBool).device(device);
  const Tensor query_abs =
      torch::arange(cache.length, total, f32.dtype(torch::kInt64)).unsqueeze(1);  // (T, 1)
  const Tensor key_abs =
      torch::arange(0, total, f32.dtype(torch::kInt64)).unsqueeze(0);  // (1, total)
  const Tensor causal = (key_abs <= query_abs).to(bool_opts);
  const Tensor self = key_abs == query_abs;
  const Tensor mask = ((key_mask.unsqueeze(1) & causal.unsqueeze(0)) | self.unsqueeze(0))
                          .unsqueeze(1);  // (B,1,T,total)

  Tensor x = embed_.index_select(0, tokens.reshape({B * T})).view({B, T, c.hidden_size});
  for (size_t i = 0; i < layers_.size(); ++i)
    x = layer_forward(layers_[i], x, cos, sin, mask, cache, i);
  cache.length = total;
  const Tensor last = rms_norm(x.select(1, T - 1), final_norm_, c.rms_eps);  // (B, H)
  return torch::linear(last, lm_head_).to(torch::kFloat);                    // (B, V)
}

}  // namespace polar::sample
