// ModelConfig: JSON round trip, validation, exact parameter count and FLOPs per token.
#include "polar/model/config.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "polar/common/config_visitors.h"
#include "polar/common/error.h"
#include "polar/model/family.h"

namespace polar {

namespace {

// Parameters of one decoder layer, split into matmul weights and the rest (biases, norms).
struct LayerParams {
  int64_t matmul = 0;
  int64_t other = 0;
};

LayerParams layer_params(const ModelConfig& c) {
  const int64_t h = c.hidden_size, q = c.q_size();
  const int64_t kv = c.num_kv_heads * c.head_size();
  LayerParams p;
  p.matmul = h * q                           // q_proj
             + 2 * h * kv                    // k_proj, v_proj
             + q * h                         // o_proj
             + 3 * h * c.intermediate_size;  // gate_proj, up_proj, down_proj
  p.other = 2 * h;                           // input_layernorm, post_attention_layernorm
  if (c.qkv_bias) p.other += q + 2 * kv;
  if (c.qk_norm()) p.other += 2 * c.head_size();  // self_attn.q_norm, self_attn.k_norm
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
  // attention scores (q.k) and the weighted sum of values, each 2 * seq_len * heads * head_dim
  // per layer.
  // Embedding lookups are not matmuls; the reward head runs once per sequence, not per token.
  const LayerParams p = layer_params(*this);
  const double matmul = 2.0 * static_cast<double>(num_layers * p.matmul);
  const double attention = 2.0 * 2.0 * static_cast<double>(num_layers) *
                           static_cast<double>(seq_len) * static_cast<double>(q_size());
  return matmul + attention;
}

void ModelConfig::validate() const {
  try {
    family();
  } catch (const Error& e) {
    throw Error(std::string("model.architecture: ") + e.what());
  }
  SchemaLimitChecker("model.").check(*this);
  POLAR_CHECK(head_dim > 0 || hidden_size % num_heads == 0, "model.hidden_size (", hidden_size,
              ") must be divisible by model.num_heads (", num_heads,
              ") unless model.head_dim is given");
  POLAR_CHECK(num_heads % num_kv_heads == 0, "model.num_heads (", num_heads,
              ") must be divisible by model.num_kv_heads (", num_kv_heads, ")");
  POLAR_CHECK(head_size() % 2 == 0, "model: head dimension ", head_size(),
              " must be even for rotary embeddings");
  POLAR_CHECK(q_size() <= kMaxHidden, "model.num_heads x head dimension = ", q_size(), " exceeds ",
              kMaxHidden);
  POLAR_CHECK(rope_type != RopeType::Llama3 || rope_high_freq_factor > rope_low_freq_factor,
              "model.rope_high_freq_factor (", rope_high_freq_factor,
              ") must exceed model.rope_low_freq_factor (", rope_low_freq_factor,
              ") for rope_type llama3");
}

const FamilyInfo& ModelConfig::family() const { return family_by_name(architecture); }

bool ModelConfig::qk_norm() const { return family().qk_norm; }

double machine_memory_bytes() {
  if (const char* env = std::getenv("POLAR_MEMORY_BYTES")) {
    char* end = nullptr;
    double v = std::strtod(env, &end);
    POLAR_CHECK(end != env && *end == '\0' && std::isfinite(v) && v > 0,
                "POLAR_MEMORY_BYTES: expected a positive number of bytes, got \"", env, "\"");
    return v;
  }
  return static_cast<double>(::sysconf(_SC_PHYS_PAGES)) *
         static_cast<double>(::sysconf(_SC_PAGESIZE));
}

void check_model_memory(const ModelConfig& c, double bytes_per_parameter, const std::string& what) {
  c.validate();  // bounds first: the counts below cannot overflow within them
  const double params = static_cast<double>(c.num_parameters());
  const double need = params * bytes_per_parameter;
  const double have = machine_memory_bytes();
  if (need <= have) return;
  const double embedding = static_cast<double>(c.vocab_size * c.hidden_size);
  const std::string largest =
      embedding >= params / 2
          ? fmt::format("the embedding, model.vocab_size x model.hidden_size = {} x {}",
                        c.vocab_size, c.hidden_size)
          : fmt::format(
                "the layers, model.num_layers x (model.hidden_size, model.intermediate_size) = {} "
                "x ({}, {})",
                c.num_layers, c.hidden_size, c.intermediate_size);
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  throw Error(
      fmt::format("model: {:.3g} parameters need {:.1f} GiB for {} ({} bytes each), more than this "
                  "machine's {:.1f} GiB of memory; the largest part is {}",
                  params, need / kGiB, what, bytes_per_parameter, have / kGiB, largest));
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& where) {
  ModelConfig c;
  SchemaReader(j, where).read(c);
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  return c;
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j = SchemaWriter::write(*this);
  if (rope_type != RopeType::Llama3) {  // the llama3 keys only where they mean something
    j.erase("rope_low_freq_factor");
    j.erase("rope_high_freq_factor");
    j.erase("rope_original_max_position");
  }
  return j;
}

}  // namespace polar
