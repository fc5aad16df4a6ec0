// ModelConfig: JSON round trip, validation, exact parameter count and FLOPs per token.
#include "polar/model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "polar/common/error.h"
#include "polar/common/json_config.h"

namespace polar {

namespace {

// Parameters of one decoder layer, split into matmul weights and the rest (biases, norms).
struct LayerParams {
  int64_t matmul = 0;
  int64_t other = 0;
};

LayerParams layer_params(const ModelConfig& c) {
  const int64_t h = c.hidden_size;
  const int64_t kv = c.num_kv_heads * c.head_dim();
  LayerParams p;
  p.matmul = h * h                           // q_proj
             + 2 * h * kv                    // k_proj, v_proj
             + h * h                         // o_proj
             + 3 * h * c.intermediate_size;  // gate_proj, up_proj, down_proj
  p.other = 2 * h;                           // input_layernorm, post_attention_layernorm
  if (c.qkv_bias) p.other += h + 2 * kv;
  return p;
}

}  // namespace

int64_t ModelConfig::num_parameters() const {
  const LayerParams p = layer_params(*this);
  return vocab_size * hidden_size                           // model.embed_tokens.weight
         + num_layers * (p.matmul + p.other) + hidden_size  // model.norm.weight
         + hidden_size;                                     // score.weight (1, H)
}

double ModelConfig::flops_per_token(int64_t seq_len) const {
  // Forward only (training is about 3x): 2 FLOPs per multiply-add of every layer matmul, plus
  // attention scores (q.k) and the weighted sum of values, each 2 * seq_len * hidden per layer.
  // Embedding lookups are not matmuls; the reward head runs once per sequence, not per token.
  const LayerParams p = layer_params(*this);
  const double matmul = 2.0 * static_cast<double>(num_layers * p.matmul);
  const double attention = 2.0 * 2.0 * static_cast<double>(num_layers) * static_cast<double>(seq_len) *
                           static_cast<double>(hidden_size);
  return matmul + attention;
}

void ModelConfig::validate() const {
  POLAR_CHECK(architecture == "llama" || architecture == "qwen2" || architecture == "internlm2",
              "model.architecture: expected one of llama, qwen2, internlm2, got \"", architecture, "\"");
  POLAR_CHECK(vocab_size > 0, "model.vocab_size: expected > 0, got ", vocab_size);
  POLAR_CHECK(hidden_size > 0, "model.hidden_size: expected > 0, got ", hidden_size);
  POLAR_CHECK(num_layers > 0, "model.num_layers: expected > 0, got ", num_layers);
  POLAR_CHECK(num_heads > 0, "model.num_heads: expected > 0, got ", num_heads);
  POLAR_CHECK(num_kv_heads > 0, "model.num_kv_heads: expected > 0, got ", num_kv_heads);
  POLAR_CHECK(hidden_size % num_heads == 0, "model.hidden_size (", hidden_size,
              ") must be divisible by model.num_heads (", num_heads, ")");
  POLAR_CHECK(num_heads % num_kv_heads == 0, "model.num_heads (", num_heads,
              ") must be divisible by model.num_kv_heads (", num_kv_heads, ")");
  POLAR_CHECK(head_dim() % 2 == 0, "model: head dimension hidden_size / num_heads = ", head_dim(),
              " must be even for rotary embeddings");
  POLAR_CHECK(intermediate_size > 0, "model.intermediate_size: expected > 0, got ", intermediate_size);
  POLAR_CHECK(max_position > 0, "model.max_position: expected > 0, got ", max_position);
  POLAR_CHECK(std::isfinite(rope_theta) && rope_theta > 0, "model.rope_theta: expected > 0, got ",
              rope_theta);
  POLAR_CHECK(std::isfinite(rope_scaling) && rope_scaling > 0,
              "model.rope_scaling: expected a linear factor > 0 (1 = none), got ", rope_scaling);
  POLAR_CHECK(std::isfinite(rms_eps) && rms_eps > 0, "model.rms_eps: expected > 0, got ", rms_eps);
  POLAR_CHECK(std::isfinite(init_std) && init_std >= 0, "model.init_std: expected >= 0, got ", init_std);
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& where) {
  ModelConfig c;
  ConfigReader r(j, where);
  r.get("architecture", c.architecture);
  r.get("vocab_size", c.vocab_size);
  r.get("hidden_size", c.hidden_size);
  r.get("num_layers", c.num_layers);
  r.get("num_heads", c.num_heads);
  r.get("num_kv_heads", c.num_kv_heads);
  r.get("intermediate_size", c.intermediate_size);
  r.get("max_position", c.max_position);
  r.get("rope_theta", c.rope_theta);
  r.get("rope_scaling", c.rope_scaling);
  r.get("rms_eps", c.rms_eps);
  r.get("qkv_bias", c.qkv_bias);
  r.get("tie_embeddings", c.tie_embeddings);
  r.get("init_std", c.init_std);
  r.finish();
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  return c;
}

nlohmann::json ModelConfig::to_json() const {
  return nlohmann::json{{"architecture", architecture},
                        {"vocab_size", vocab_size},
                        {"hidden_size", hidden_size},
                        {"num_layers", num_layers},
                        {"num_heads", num_heads},
                        {"num_kv_heads", num_kv_heads},
                        {"intermediate_size", intermediate_size},
                        {"max_position", max_position},
                        {"rope_theta", rope_theta},
                        {"rope_scaling", rope_scaling},
                        {"rms_eps", rms_eps},
                        {"qkv_bias", qkv_bias},
                        {"tie_embeddings", tie_embeddings},
                        {"init_std", init_std}};
}

}  // namespace polar
