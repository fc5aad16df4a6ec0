// ModelConfig: JSON round trip, validation, exact parameter count and FLOPs per token.
#include "polar/model/config.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "polar/common/error.h"
#include "polar/common/json_config.h"
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
  const int64_t kv = c.num_kv_heads * c.head_dim();
  LayerParams p;
  p.matmul = h * q                           // q_proj
             + 2 * h * kv                    // k_proj, v_proj
             + q * h                         // o_proj
             + 3 * h * c.intermediate_size;  // gate_proj, up_proj, down_proj
  p.other = 2 * h;                           // input_layernorm, post_attention_layernorm
  if (c.qkv_bias) p.other += q + 2 * kv;
  if (c.qk_norm()) p.other += 2 * c.head_dim();  // self_attn.q_norm, self_attn.k_norm
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

namespace {

// Shape bounds: generous for real models (256k vocabularies, 16k hidden sizes, 1M contexts), yet
// small enough that counts and byte sizes cannot overflow and a typo is not taken for a shape.
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxHidden = int64_t{1} << 16;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxIntermediate = int64_t{1} << 20;
constexpr int64_t kMinPosition = 16;
constexpr int64_t kMaxPosition = int64_t{1} << 24;

void check_int(const char* key, int64_t v, int64_t lo, int64_t hi) {
  POLAR_CHECK(v >= lo && v <= hi, "model.", key, ": expected an integer in [", lo, ", ", hi,
              "], got ", v);
}

void check_real(const char* key, double v, double lo, double hi, bool lo_open) {
  bool ok = std::isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi;
  POLAR_CHECK(ok, "model.", key, ": expected a number in ", lo_open ? "(" : "[", lo, ", ", hi,
              "], got ", v);
}

}  // namespace

void ModelConfig::validate() const {
  try {
    family();
  } catch (const Error& e) {
    throw Error(std::string("model.architecture: ") + e.what());
  }
  check_int("vocab_size", vocab_size, 1, kMaxVocab);
  check_int("hidden_size", hidden_size, 1, kMaxHidden);
  check_int("num_layers", num_layers, 1, kMaxLayers);
  check_int("num_heads", num_heads, 1, kMaxHeads);
  check_int("num_kv_heads", num_kv_heads, 1, kMaxHeads);
  check_int("head_dim", attention_head_dim, 0, kMaxHidden);
  POLAR_CHECK(attention_head_dim > 0 || hidden_size % num_heads == 0, "model.hidden_size (",
              hidden_size, ") must be divisible by model.num_heads (", num_heads,
              ") unless model.head_dim is given");
  POLAR_CHECK(num_heads % num_kv_heads == 0, "model.num_heads (", num_heads,
              ") must be divisible by model.num_kv_heads (", num_kv_heads, ")");
  POLAR_CHECK(head_dim() % 2 == 0, "model: head dimension ", head_dim(),
              " must be even for rotary embeddings");
  POLAR_CHECK(q_size() <= kMaxHidden, "model.num_heads x head dimension = ", q_size(), " exceeds ",
              kMaxHidden);
  check_int("intermediate_size", intermediate_size, 1, kMaxIntermediate);
  check_int("max_position", max_position, kMinPosition, kMaxPosition);
  check_real("rope_theta", rope_theta, 0, 1e12, true);
  check_real("rope_scaling", rope_scaling, 0, 1e4, true);
  if (rope_type == RopeType::Llama3) {
    check_real("rope_low_freq_factor", rope_low_freq_factor, 0, 1e4, true);
    check_real("rope_high_freq_factor", rope_high_freq_factor, 0, 1e4, true);
    POLAR_CHECK(rope_high_freq_factor > rope_low_freq_factor, "model.rope_high_freq_factor (",
                rope_high_freq_factor, ") must exceed model.rope_low_freq_factor (",
                rope_low_freq_factor, ") for rope_type llama3");
    check_int("rope_original_max_position", rope_original_max_position, 1, kMaxPosition);
  }
  check_real("rms_eps", rms_eps, 0, 1, true);
  check_real("init_std", init_std, 0, 10, false);
}

const FamilyInfo& ModelConfig::family() const { return family_by_name(architecture); }

bool ModelConfig::qk_norm() const { return family().qk_norm; }

const char* rope_type_name(RopeType type) { return type == RopeType::Llama3 ? "llama3" : "linear"; }

RopeType parse_rope_type(const std::string& name, const std::string& where) {
  if (name == "linear") return RopeType::Linear;
  if (name == "llama3") return RopeType::Llama3;
  throw Error(where + ": expected \"linear\" or \"llama3\", got \"" + name + "\"");
}

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
  ConfigReader r(j, where);
  r.get("architecture", c.architecture);
  r.get("vocab_size", c.vocab_size);
  r.get("hidden_size", c.hidden_size);
  r.get("num_layers", c.num_layers);
  r.get("num_heads", c.num_heads);
  r.get("num_kv_heads", c.num_kv_heads);
  r.get("intermediate_size", c.intermediate_size);
  r.get("max_position", c.max_position);
  r.get("head_dim", c.attention_head_dim);
  r.get("rope_theta", c.rope_theta);
  std::string rope_type = rope_type_name(c.rope_type);
  r.get("rope_type", rope_type);
  c.rope_type = parse_rope_type(rope_type, where + ": model.rope_type");
  r.get("rope_scaling", c.rope_scaling);
  r.get("rope_low_freq_factor", c.rope_low_freq_factor);
  r.get("rope_high_freq_factor", c.rope_high_freq_factor);
  r.get("rope_original_max_position", c.rope_original_max_position);
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
  nlohmann::json j{{"architecture", architecture},
                   {"vocab_size", vocab_size},
                   {"hidden_size", hidden_size},
                   {"num_layers", num_layers},
                   {"num_heads", num_heads},
                   {"num_kv_heads", num_kv_heads},
                   {"intermediate_size", intermediate_size},
                   {"max_position", max_position},
                   {"head_dim", attention_head_dim},
                   {"rope_theta", rope_theta},
                   {"rope_type", rope_type_name(rope_type)},
                   {"rope_scaling", rope_scaling},
                   {"rms_eps", rms_eps},
                   {"qkv_bias", qkv_bias},
                   {"tie_embeddings", tie_embeddings},
                   {"init_std", init_std}};
  if (rope_type == RopeType::Llama3) {
    j["rope_low_freq_factor"] = rope_low_freq_factor;
    j["rope_high_freq_factor"] = rope_high_freq_factor;
    j["rope_original_max_position"] = rope_original_max_position;
  }
  return j;
}

}  // namespace polar
