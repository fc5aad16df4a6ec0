// RewardModel: a Llama-family decoder laid out exactly as Hugging Face's
// LlamaForSequenceClassification (parameter names and numerics), run over packed rows, or
// incrementally over a KV cache for the sampler's causal LM. A family's numerics (q/k norm,
// RoPE scaling, biases) live here and in model/rope.h only.
#include "polar/model/reward_model.h"

#include <ATen/autocast_mode.h>
#include <ATen/ops/_fused_rms_norm.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <functional>

#include "polar/common/error.h"
#include "polar/data/attention_layout.h"
#include "polar/data/batch.h"
#include "polar/kernels/attention.h"
#include "polar/kernels/cpu_fused.h"
#include "polar/kernels/reward_head.h"
#include "polar/model/lora.h"
#include "polar/model/param_kind.h"
#include "polar/model/rope.h"

namespace polar {

using torch::Tensor;

namespace {

// Everything a layer needs besides its input, computed once per forward.
struct AttentionInputs {
  RopeTables rope;  // cos/sin (B, T, 1, D) in the model dtype
  // Math: (B, 1, T, T) bool, true where a query may attend to a key. Cached decoding:
  // (B, 1, T, cache.length + T).
  Tensor mask;
  // Cached decoding (RewardModelImpl::decode): each layer appends its keys/values here and
  // attends over all of them with `mask`.
  KvCache* cache = nullptr;
  // Varlen and Blocks: real tokens, their blocks and gathered keys (on the model's device).
  AttentionLayout layout;
  AttentionImpl impl = AttentionImpl::Math;
};

// Linear map with HF layout: weight (out, in), optional bias (out); a LoRA host (model/lora.h).
struct ProjImpl : torch::nn::Module, LoraHost {
  ProjImpl(int64_t in, int64_t out, bool with_bias) {
    weight = register_parameter("weight", torch::empty({out, in}));
    if (with_bias) bias = register_parameter("bias", torch::zeros({out}));
  }
  Tensor forward(const Tensor& x) {
    const Tensor y = bias.defined() ? torch::linear(x, weight, bias) : torch::linear(x, weight);
    return lora ? lora->apply(x, y, is_training()) : y;
  }
  Tensor& lora_base_weight() override { return weight; }
  Tensor weight, bias;
};

// Same numerics as HF LlamaRMSNorm: normalise in fp32 (fp64 for a double model), cast back to
// the input dtype, then multiply by the weight.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  // fp32 on CUDA (the residual stream, also under autocast): ATen's fused kernel, one pass
  // forward and one backward instead of five; the same fp32 arithmetic up to rounding.
  if (x.is_cuda() && x.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat)
    return std::get<0>(at::_fused_rms_norm(x, {x.size(-1)}, weight, eps));
  // fp32/fp64 on the CPU: one pass forward and one backward (memory traffic is the cost there).
  if (kernels::cpu_fused_available(x) && weight.scalar_type() == x.scalar_type())
    return kernels::rms_norm_cpu(x, weight, eps);
  const auto compute = x.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  const Tensor xf = x.to(compute);
  const Tensor normed = xf * torch::rsqrt(xf.square().mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int64_t hidden, double eps) : eps(eps) {
    weight = register_parameter("weight", torch::ones({hidden}));
  }
  Tensor forward(const Tensor& x) { return rms_norm(x, weight, eps); }
  Tensor weight;
  double eps;
};

// HF "rotate_half": (x1, x2) -> (-x2, x1) over the two halves of the head dimension.
Tensor rotate_half(const Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

Tensor apply_rope(const Tensor& x, const RopeTables& rope) {  // x (B, T, heads, D)
  if (kernels::cpu_fused_available(x) && rope.cos.scalar_type() == x.scalar_type()) {
    const int64_t n = x.size(0) * x.size(1), d = x.size(3);
    return kernels::rope_cpu(x.reshape({n, x.size(2), d}), rope.cos.reshape({n, d}).contiguous(),
                             rope.sin.reshape({n, d}).contiguous())
        .view(x.sizes());
  }
  return x * rope.cos + rotate_half(x) * rope.sin;
}

struct AttentionModule : torch::nn::Module {
  AttentionModule(const ModelConfig& c, int64_t layer)
      : num_heads(c.num_heads),
        num_kv_heads(c.num_kv_heads),
        head_dim(c.head_size()),
        layer(layer) {
    const int64_t kv = c.num_kv_heads * c.head_size();
    q_proj = register_module("q_proj",
                             std::make_shared<ProjImpl>(c.hidden_size, c.q_size(), c.qkv_bias));
    k_proj = register_module("k_proj", std::make_shared<ProjImpl>(c.hidden_size, kv, c.qkv_bias));
    v_proj = register_module("v_proj", std::make_shared<ProjImpl>(c.hidden_size, kv, c.qkv_bias));
    o_proj =
        register_module("o_proj", std::make_shared<ProjImpl>(c.q_size(), c.hidden_size, false));
    if (c.qk_norm()) {  // Qwen3: RMSNorm over each head's D values, shared by the heads
      q_norm = register_module("q_norm", std::make_shared<RMSNormImpl>(head_dim, c.rms_eps));
      k_norm = register_module("k_norm", std::make_shared<RMSNormImpl>(head_dim, c.rms_eps));
    }
  }

  Tensor forward(const Tensor& x, const AttentionInputs& in) {  // x (B, T, H)
    const int64_t B = x.size(0), T = x.size(1);
    Tensor q = q_proj->forward(x).view({B, T, num_heads, head_dim});
    Tensor k = k_proj->forward(x).view({B, T, num_kv_heads, head_dim});
    if (q_norm) {  // before RoPE, as transformers' Qwen3Attention
      q = q_norm->forward(q);
      k = k_norm->forward(k);
    }
    q = apply_rope(q, in.rope);
    k = apply_rope(k, in.rope);
    const Tensor v = v_proj->forward(x).view({B, T, num_kv_heads, head_dim});
    Tensor out;  // (B, T, Hq * D)
    if (in.cache) {
      out = cached_attention(q, k, v, in).transpose(1, 2).reshape({B, T, num_heads * head_dim});
    } else if (in.impl == AttentionImpl::Math) {
      out = grouped_sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), in.mask)
                .transpose(1, 2)
                .reshape({B, T, num_heads * head_dim});
    } else {
      out = blocks(q, k, v, in).view({B, T, num_heads * head_dim});
    }
    return o_proj->forward(out);
  }

  // q (B, Hq, T, D), k/v (B, Hkv, S, D) -> (B, Hq, T, D).
  Tensor grouped_sdpa(const Tensor& q, Tensor kh, Tensor vh, const Tensor& mask) const {
    const int64_t rep = num_heads / num_kv_heads;
    if (rep > 1) {  // HF repeat_kv: query head h reads kv head h / rep
      kh = kh.repeat_interleave(rep, 1);
      vh = vh.repeat_interleave(rep, 1);
    }
    return torch::scaled_dot_product_attention(q, kh, vh, mask);
  }

  // Appends k/v (B, T, Hkv, D) to this layer's cache at cache.length and attends over every
  // cached key: (B, Hq, T, D).
  Tensor cached_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                          const AttentionInputs& in) const {
    KvCache& cache = *in.cache;
    const int64_t T = q.size(1), total = cache.length + T;
    cache.keys[layer].narrow(2, cache.length, T).copy_(k.transpose(1, 2));
    cache.values[layer].narrow(2, cache.length, T).copy_(v.transpose(1, 2));
    return grouped_sdpa(q.transpose(1, 2), cache.keys[layer].narrow(2, 0, total),
                        cache.values[layer].narrow(2, 0, total), in.mask);
  }

  // Attention over the real tokens only, block by block (flash on CUDA, the reference
  // elsewhere); a block's keys are gathered when it sees a shared prefix. Padding rows are zero.
  Tensor blocks(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionInputs& in) {
    const int64_t B = q.size(0), T = q.size(1);
    const AttentionLayout& l = in.layout;
    const auto real = [&](const Tensor& x, int64_t heads) {
      const Tensor flat = x.reshape({B * T, heads, head_dim});
      return l.all_tokens ? flat : flat.index_select(0, l.token_index);
    };
    const Tensor qf = real(q, num_heads);
    Tensor kf = real(k, num_kv_heads), vf = real(v, num_kv_heads);
    Tensor of;
    if (in.impl == AttentionImpl::Blocks) {
      // Keys read through key_index: a shared prefix is read in place, once per group.
      of = kernels::varlen_attention_padded(qf, kf, vf, l.cu_q, l.cu_k, l.key_index);
    } else {
      if (l.key_index.defined()) {
        kf = kf.index_select(0, l.key_index);
        vf = vf.index_select(0, l.key_index);
      }
      // Under CUDA autocast RoPE promotes q/k to fp32 (cos/sin keep the weights' dtype); flash
      // attention takes the autocast dtype.
      const auto dt = at::autocast::is_autocast_enabled(at::kCUDA)
                          ? at::autocast::get_autocast_dtype(at::kCUDA)
                          : qf.scalar_type();
      of = kernels::varlen_attention(qf.to(dt), kf.to(dt), vf.to(dt), l.cu_q, l.cu_k, l.max_q,
                                     l.max_k);
    }
    const int64_t n_tok = qf.size(0);
    if (l.all_tokens) return of.reshape({B * T, num_heads * head_dim});
    return torch::zeros({B * T, num_heads * head_dim}, of.options())
        .index_copy(0, l.token_index, of.reshape({n_tok, num_heads * head_dim}));
  }

  int64_t num_heads, num_kv_heads, head_dim;
  int64_t layer;  // index into a KV cache
  std::shared_ptr<ProjImpl> q_proj, k_proj, v_proj, o_proj;
  std::shared_ptr<RMSNormImpl> q_norm, k_norm;  // null unless the family has q/k norms
};

struct MLPImpl : torch::nn::Module {  // SwiGLU: down(silu(gate(x)) * up(x))
  explicit MLPImpl(const ModelConfig& c) {
    gate_proj = register_module(
        "gate_proj", std::make_shared<ProjImpl>(c.hidden_size, c.intermediate_size, false));
    up_proj = register_module(
        "up_proj", std::make_shared<ProjImpl>(c.hidden_size, c.intermediate_size, false));
    down_proj = register_module(
        "down_proj", std::make_shared<ProjImpl>(c.intermediate_size, c.hidden_size, false));
  }
  Tensor forward(const Tensor& x) {
    return down_proj->forward(torch::silu(gate_proj->forward(x)) * up_proj->forward(x));
  }
  std::shared_ptr<ProjImpl> gate_proj, up_proj, down_proj;
};

// A module that only holds a "weight" parameter (embedding table, reward head).
struct WeightHolder : torch::nn::Module {
  explicit WeightHolder(std::vector<int64_t> shape) {
    weight = register_parameter("weight", torch::empty(shape));
  }
  Tensor weight;
};

// Activation checkpointing: the layer runs without saving activations and is recomputed in
// backward, whose inner backward accumulates the layer's parameter gradients into .grad (as
// PyTorch's reentrant checkpoint does). So it serves loss.backward(), not autograd::grad().
// The forward's CUDA autocast state is kept and re-entered for the recompute (backward runs on
// the autograd engine's thread, whose autocast is off), as PyTorch's checkpoint does.
struct Recompute : torch::CustomClassHolder {
  std::function<Tensor(const Tensor&)> fn;
  bool autocast = false;
  at::ScalarType autocast_dtype = at::kBFloat16;
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x,
                        const c10::intrusive_ptr<Recompute>& recompute) {
    ctx->save_for_backward({x});
    ctx->saved_data["recompute"] = c10::IValue::make_capsule(recompute);
    return recompute->fn(x);  // grad mode is off here: nothing inside is saved
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto holder = ctx->saved_data["recompute"].toCapsule();
    const auto* recompute = static_cast<const Recompute*>(holder.get());
    const Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    Tensor out;
    {
      torch::AutoGradMode grad_mode(true);
      const bool prev = at::autocast::is_autocast_enabled(at::kCUDA);
      const at::ScalarType prev_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
      at::autocast::set_autocast_enabled(at::kCUDA, recompute->autocast);
      at::autocast::set_autocast_dtype(at::kCUDA, recompute->autocast_dtype);
      try {
        out = recompute->fn(x);
      } catch (...) {
        at::autocast::set_autocast_enabled(at::kCUDA, prev);
        at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype);
        throw;
      }
      at::autocast::set_autocast_enabled(at::kCUDA, prev);
      at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype);
    }
    torch::autograd::backward({out}, {grad_outputs[0]});
    return {x.grad(), Tensor()};
  }
};

Tensor checkpoint_call(std::function<Tensor(const Tensor&)> fn, Tensor x) {
  // The Function is only recorded when an input needs grad; the layer's parameters do even
  // when the embedding is frozen.
  if (!x.requires_grad()) x = x.detach().requires_grad_(true);
  auto recompute = c10::make_intrusive<Recompute>();
  recompute->fn = std::move(fn);
  recompute->autocast = at::autocast::is_autocast_enabled(at::kCUDA);
  recompute->autocast_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  return CheckpointFunction::apply(x, recompute);
}

void check_token_tensor(const Tensor& t, const char* name, const Tensor& like) {
  POLAR_CHECK(t.defined() && t.dim() == 2 && t.scalar_type() == torch::kInt64,
              "RewardModel: ", name, " must be a (B, T) int64 tensor");
  POLAR_CHECK(t.sizes() == like.sizes(), "RewardModel: ", name, " has shape ", t.sizes(),
              ", tokens have ", like.sizes());
}

}  // namespace

// Pre-norm decoder layer with HF names: self_attn, mlp, input_layernorm, post_attention_layernorm.
struct RewardModelImpl::Layer : torch::nn::Module {
  Layer(const ModelConfig& c, int64_t index) {
    self_attn = register_module("self_attn", std::make_shared<AttentionModule>(c, index));
    mlp = register_module("mlp", std::make_shared<MLPImpl>(c));
    input_layernorm =
        register_module("input_layernorm", std::make_shared<RMSNormImpl>(c.hidden_size, c.rms_eps));
    post_attention_layernorm = register_module(
        "post_attention_layernorm", std::make_shared<RMSNormImpl>(c.hidden_size, c.rms_eps));
  }
  Tensor forward(const Tensor& x, const AttentionInputs& in) {  // (B, T, H) -> (B, T, H)
    const Tensor h = x + self_attn->forward(input_layernorm->forward(x), in);
    return h + mlp->forward(post_attention_layernorm->forward(h));
  }
  std::shared_ptr<AttentionModule> self_attn;
  std::shared_ptr<MLPImpl> mlp;
  std::shared_ptr<RMSNormImpl> input_layernorm, post_attention_layernorm;
};

RewardModelImpl::RewardModelImpl(const ModelConfig& config, bool initialize) : config_(config) {
  check_model_memory(config_, 4.0, "the weights");  // validates the shape, then its size
  // Registration order is HF's, so named_parameters() lists names in the same order.
  auto model = register_module("model", std::make_shared<torch::nn::Module>());
  embed_tokens_ =
      model
          ->register_module("embed_tokens", std::make_shared<WeightHolder>(std::vector<int64_t>{
                                                config_.vocab_size, config_.hidden_size}))
          ->weight;
  auto layers = model->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    auto layer = std::make_shared<Layer>(config_, i);
    layers->push_back(layer);
    layers_.push_back(layer);
  }
  norm_weight_ = model
                     ->register_module("norm", std::make_shared<RMSNormImpl>(config_.hidden_size,
                                                                             config_.rms_eps))
                     ->weight;
  score_weight_ =
      register_module("score",
                      std::make_shared<WeightHolder>(std::vector<int64_t>{1, config_.hidden_size}))
          ->weight;
  if (initialize) reset_parameters(0);
}

ParamKind param_kind(const std::string& name) {
  const auto ends_with = [&](const char* suffix) {
    const size_t n = std::char_traits<char>::length(suffix);
    return name.size() >= n && name.compare(name.size() - n, n, suffix) == 0;
  };
  if (name.rfind("score.", 0) == 0) return ParamKind::Head;
  if (is_lora_parameter(name)) return ParamKind::Adapter;
  if (ends_with(".bias")) return ParamKind::Bias;
  if (name.find("norm.") != std::string::npos) return ParamKind::Norm;
  if (name.find("embed_tokens") != std::string::npos) return ParamKind::Embedding;
  return ParamKind::Matrix;
}

void RewardModelImpl::reset_parameters(uint64_t seed, bool on_device) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  if (on_device) torch::manual_seed(seed);
  for (auto& item : named_parameters()) {
    Tensor& p = item.value();
    const ParamKind kind = param_kind(item.key());
    if (kind == ParamKind::Adapter) continue;  // LoRA's A and B start as add_lora set them
    if (kind == ParamKind::Norm) {
      p.fill_(1.0);
    } else if (kind == ParamKind::Bias) {
      p.zero_();
    } else {
      if (on_device) {
        p.normal_(0.0, config_.init_std);
      } else {
        p.copy_(torch::normal(0.0, config_.init_std, p.sizes(), gen, torch::kFloat));
      }
    }
  }
}

int64_t RewardModelImpl::set_matrix_dtype(torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  int64_t n = 0;
  for (auto& item : named_parameters()) {
    Tensor& p = item.value();
    const ParamKind kind = param_kind(item.key());
    if ((kind != ParamKind::Matrix && kind != ParamKind::Embedding) || p.scalar_type() == dtype)
      continue;
    p.set_data(p.detach().to(dtype));
    ++n;
  }
  return n;
}

void RewardModelImpl::zero_reward_head() {
  torch::NoGradGuard no_grad;
  score_weight_.zero_();
}

void RewardModelImpl::reset_reward_head(uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  score_weight_.copy_(
      torch::normal(0.0, config_.init_std, score_weight_.sizes(), gen, torch::kFloat));
}

Tensor RewardModelImpl::backbone(const Tensor& tokens, const Tensor& positions,
                                 const Tensor& segments, const Tensor& context) {
  return run_backbone(tokens, positions, segments, context, nullptr);
}

Tensor RewardModelImpl::backbone(const PackedBatch& batch) {
  const bool packed = batch.layout.cu_q.defined();
  return run_backbone(batch.tokens, batch.positions, batch.segments, batch.context,
                      packed ? &batch.layout : nullptr);
}

Tensor RewardModelImpl::run_backbone(const Tensor& tokens_in, const Tensor& positions_in,
                                     const Tensor& segments_in, const Tensor& context_in,
                                     const AttentionLayout* layout) {
  check_token_tensor(tokens_in, "tokens", tokens_in);
  check_token_tensor(positions_in, "positions", tokens_in);
  check_token_tensor(segments_in, "segments", tokens_in);
  if (context_in.defined()) check_token_tensor(context_in, "context", tokens_in);
  const auto device = embed_tokens_.device();
  const auto dtype = embed_tokens_.scalar_type();
  if (tokens_in.device().is_cpu() &&
      tokens_in.numel() > 0) {  // on CUDA a bad id is a device assert
    const auto lo = tokens_in.min().item<int64_t>(), hi = tokens_in.max().item<int64_t>();
    POLAR_CHECK(lo >= 0 && hi < config_.vocab_size, "RewardModel: token ids must be in [0, ",
                config_.vocab_size, "), got min ", lo, ", max ", hi);
  }
  const Tensor tokens = tokens_in.to(device), positions = positions_in.to(device),
               segments = segments_in.to(device);
  const int64_t B = tokens.size(0), T = tokens.size(1);

  AttentionInputs in;
  in.impl = resolve_attention(device);
  Tensor run_tokens = tokens, run_positions = positions;
  Tensor real;  // with padded rows: the real tokens' flat indices into (B, T)
  if (in.impl == AttentionImpl::Math) {
    in.mask = attention_mask(segments, context_in.defined() ? context_in.to(device) : Tensor());
  } else {
    AttentionLayout& l = in.layout;
    l = layout ? *layout
               : attention_layout(segments_in, context_in);  // the packer's, or derived on the host
    POLAR_CHECK(l.rows == B && l.cols == T, "RewardModel: the batch's attention layout is for ",
                l.rows, "x", l.cols, " tokens, the batch has ", B, "x", T,
                " (recompute it with attention_layout after changing a batch)");
    POLAR_CHECK(l.cu_q.size(0) > 1, "RewardModel: batch has no real tokens");
    for (Tensor* t : {&l.token_index, &l.cu_q, &l.cu_k, &l.key_index})
      if (t->defined()) *t = t->to(device);
    if (!l.all_tokens) {
      // Rows with padding: the layers run on the real tokens only, as one row (no matmul on
      // padding, no gather per layer); the hidden states go back to their (B, T) places once at
      // the end (padding rows zero).
      real = l.token_index;
      const int64_t n = real.size(0);
      run_tokens = tokens.reshape({B * T}).index_select(0, real).view({1, n});
      run_positions = positions.reshape({B * T}).index_select(0, real).view({1, n});
      l.token_index = torch::arange(n, real.options());
      l.all_tokens = true;
      l.rows = 1;
      l.cols = n;
    }
  }
  in.rope = rope_tables(config_, run_positions, dtype);

  Tensor x = embed_tokens_.index_select(0, run_tokens.reshape({-1}))
                 .view({run_tokens.size(0), run_tokens.size(1), config_.hidden_size});
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto layer = std::static_pointer_cast<Layer>(layers_[i]);
    const bool recompute =
        checkpoint_every_ > 0 && static_cast<int64_t>(i) % checkpoint_every_ == 0;
    if (recompute && torch::GradMode::is_enabled()) {
      x = checkpoint_call([layer, in](const Tensor& input) { return layer->forward(input, in); },
                          x);
    } else {
      x = layer->forward(x, in);
    }
  }
  if (!real.defined()) return x;  // (B, T, H), before model.norm
  return torch::zeros({B * T, config_.hidden_size}, x.options())
      .index_copy(0, real, x.view({-1, config_.hidden_size}))
      .view({B, T, config_.hidden_size});
}

KvCache RewardModelImpl::new_cache(int64_t batch, int64_t capacity) const {
  KvCache cache;
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    cache.keys.push_back(torch::zeros({batch, config_.num_kv_heads, capacity, config_.head_size()},
                                      embed_tokens_.options()));
    cache.values.push_back(torch::zeros_like(cache.keys.back()));
  }
  return cache;
}

Tensor RewardModelImpl::decode(const Tensor& tokens_in, const Tensor& positions_in,
                               const Tensor& key_mask_in, KvCache& cache) const {
  torch::NoGradGuard no_grad;
  check_token_tensor(tokens_in, "tokens", tokens_in);
  check_token_tensor(positions_in, "positions", tokens_in);
  const auto device = embed_tokens_.device();
  const int64_t B = tokens_in.size(0), T = tokens_in.size(1), total = cache.length + T;
  POLAR_CHECK(
      static_cast<int64_t>(cache.keys.size()) == config_.num_layers && cache.keys[0].size(0) == B,
      "RewardModel: the KV cache is not one of this model for a batch of ", B);
  POLAR_CHECK(total <= cache.capacity(), "RewardModel: KV cache of ", cache.capacity(),
              " positions is full");
  POLAR_CHECK(key_mask_in.dim() == 2 && key_mask_in.size(0) == B && key_mask_in.size(1) == total,
              "RewardModel: key_mask must be (", B, ", ", total, "), got ", key_mask_in.sizes());
  if (tokens_in.numel() > 0) {
    const auto lo = tokens_in.min().item<int64_t>(), hi = tokens_in.max().item<int64_t>();
    POLAR_CHECK(lo >= 0 && hi < config_.vocab_size, "RewardModel: token ids must be in [0, ",
                config_.vocab_size, "), got min ", lo, ", max ", hi);
  }
  const Tensor tokens = tokens_in.to(device), positions = positions_in.to(device);
  const Tensor key_mask = key_mask_in.to(device, torch::kBool);

  AttentionInputs in;
  in.rope = rope_tables(config_, positions, embed_tokens_.scalar_type());
  in.cache = &cache;
  {
    // Query i (absolute position cache.length + i) sees real keys up to itself; a padding query
    // sees itself too, so no row is empty (an empty row would turn softmax into NaN).
    const auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(device);
    const Tensor query_abs = torch::arange(cache.length, total, i64).unsqueeze(1);  // (T, 1)
    const Tensor key_abs = torch::arange(0, total, i64).unsqueeze(0);               // (1, total)
    const Tensor causal = key_abs <= query_abs, self = key_abs == query_abs;
    in.mask = ((key_mask.unsqueeze(1) & causal.unsqueeze(0)) | self.unsqueeze(0))
                  .unsqueeze(1);  // (B, 1, T, total)
  }
  Tensor x =
      embed_tokens_.index_select(0, tokens.reshape({B * T})).view({B, T, config_.hidden_size});
  for (const auto& layer : layers_) x = std::static_pointer_cast<Layer>(layer)->forward(x, in);
  cache.length = total;
  return x;  // (B, T, H), before model.norm
}

Tensor RewardModelImpl::final_norm(const Tensor& hidden) const {
  return rms_norm(hidden, norm_weight_, config_.rms_eps);
}

AttentionImpl RewardModelImpl::resolve_attention(const torch::Device& device) const {
  // The dtype attention sees: autocast's when on.
  const auto dtype = device.is_cuda() && at::autocast::is_autocast_enabled(at::kCUDA)
                         ? at::autocast::get_autocast_dtype(at::kCUDA)
                         : embed_tokens_.scalar_type();
  return choose_attention(attention_impl_, device, dtype);
}

AttentionImpl RewardModelImpl::choose_attention(AttentionImpl requested,
                                                const torch::Device& device,
                                                torch::ScalarType dtype) const {
  if (requested == AttentionImpl::Math || requested == AttentionImpl::Blocks) return requested;
  // Probe with a tensor shaped like the packed queries (N, Hq, D).
  const Tensor probe = torch::empty({1, config_.num_heads, config_.head_size()},
                                    torch::TensorOptions().device(device).dtype(dtype));
  const bool varlen_ok = device.is_cuda() && kernels::varlen_attention_available(probe);
  if (requested == AttentionImpl::Auto) {
    if (varlen_ok) return AttentionImpl::Varlen;
    return device.is_cpu() ? AttentionImpl::Blocks : AttentionImpl::Math;
  }
  POLAR_CHECK(varlen_ok, "RewardModel: varlen attention is unavailable for ", dtype, " on ", device,
              " with head_dim ", config_.head_size(),
              " (needs the CUDA kernels, bf16/fp16 and an sm_80+ GPU); use attention_impl Math, "
              "Blocks or Auto");
  return requested;
}

Tensor RewardModelImpl::reward_head(const Tensor& hidden_flat, const Tensor& reward_index) {
  POLAR_CHECK(hidden_flat.dim() == 2 && hidden_flat.size(1) == config_.hidden_size,
              "RewardModel: reward_head expects hidden (B*T, ", config_.hidden_size, "), got ",
              hidden_flat.sizes());
  POLAR_CHECK(reward_index.dim() == 1 && reward_index.scalar_type() == torch::kInt64,
              "RewardModel: reward_index must be a 1-D int64 tensor");
  // The fused kernel on CUDA when enabled, else the reference (fp32, fp64 for a double model).
  return kernels::reward_head(hidden_flat, reward_index.to(hidden_flat.device()), norm_weight_,
                              score_weight_, config_.rms_eps, fused_head_);
}

Tensor RewardModelImpl::forward(const Tensor& tokens, const Tensor& positions,
                                const Tensor& segments, const Tensor& reward_index,
                                const Tensor& context) {
  const Tensor hidden = backbone(tokens, positions, segments, context);  // (B, T, H)
  return reward_head(hidden.reshape({-1, config_.hidden_size}), reward_index);
}

Tensor RewardModelImpl::forward(const PackedBatch& batch) {
  POLAR_CHECK(batch.tokens.defined() && batch.reward_index.defined(),
              "RewardModel: the packed batch is empty");
  const int64_t flat = batch.tokens.numel();
  if (batch.reward_index.device().is_cpu() && batch.reward_index.numel() > 0) {
    const auto lo = batch.reward_index.min().item<int64_t>(),
               hi = batch.reward_index.max().item<int64_t>();
    POLAR_CHECK(lo >= 0 && hi < flat, "RewardModel: reward_index must be in [0, ", flat,
                "), got min ", lo, ", max ", hi);
  }
  const Tensor hidden = backbone(batch);  // (B, T, H)
  return reward_head(hidden.reshape({-1, config_.hidden_size}), batch.reward_index);
}

}  // namespace polar
