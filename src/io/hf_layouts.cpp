// Adapter tables between polar's parameter names and the Llama/Qwen2/Qwen3 and InternLM2 layouts,
// and which family uses which.
#include "polar/io/hf_layouts.h"

#include <torch/torch.h>

#include "polar/common/error.h"

namespace polar::io::hf {

using torch::Tensor;

namespace {

const LayoutTable kLlama{
    /*name=*/"Llama",
    /*globals=*/
    {{"model.embed_tokens.weight", "model.embed_tokens.weight"},
     {"model.norm.weight", "model.norm.weight"}},
    /*layer=*/
    {{"self_attn.q_proj.weight", "self_attn.q_proj.weight"},
     {"self_attn.k_proj.weight", "self_attn.k_proj.weight"},
     {"self_attn.v_proj.weight", "self_attn.v_proj.weight"},
     {"self_attn.o_proj.weight", "self_attn.o_proj.weight"},
     {"mlp.gate_proj.weight", "mlp.gate_proj.weight"},
     {"mlp.up_proj.weight", "mlp.up_proj.weight"},
     {"mlp.down_proj.weight", "mlp.down_proj.weight"},
     {"input_layernorm.weight", "input_layernorm.weight"},
     {"post_attention_layernorm.weight", "post_attention_layernorm.weight"}},
    /*qkv_bias=*/
    {{"self_attn.q_proj.bias", "self_attn.q_proj.bias"},
     {"self_attn.k_proj.bias", "self_attn.k_proj.bias"},
     {"self_attn.v_proj.bias", "self_attn.v_proj.bias"}},
    /*qk_norm=*/
    {{"self_attn.q_norm.weight", "self_attn.q_norm.weight"},
     {"self_attn.k_norm.weight", "self_attn.k_norm.weight"}},
    /*packed_qkv=*/nullptr,
    /*o_bias=*/"self_attn.o_proj.bias",
    /*reward_head=*/"score.weight",
    /*lm_head=*/"lm_head.weight",
};

const LayoutTable kInternLM2{
    /*name=*/"InternLM2",
    /*globals=*/
    {{"model.tok_embeddings.weight", "model.embed_tokens.weight"},
     {"model.norm.weight", "model.norm.weight"}},
    /*layer=*/
    {{"attention.wo.weight", "self_attn.o_proj.weight"},
     {"feed_forward.w1.weight", "mlp.gate_proj.weight"},
     {"feed_forward.w3.weight", "mlp.up_proj.weight"},
     {"feed_forward.w2.weight", "mlp.down_proj.weight"},
     {"attention_norm.weight", "input_layernorm.weight"},
     {"ffn_norm.weight", "post_attention_layernorm.weight"}},
    /*qkv_bias=*/{},
    /*qk_norm=*/{},
    /*packed_qkv=*/"attention.wqkv",
    /*o_bias=*/"attention.wo.bias",
    /*reward_head=*/"v_head.weight",
    /*lm_head=*/"output.weight",
};

// The layout of each family of model/family.h.
const std::pair<ModelFamily, const LayoutTable*> kFamilyLayouts[] = {
    {ModelFamily::Llama, &kLlama},
    {ModelFamily::Qwen2, &kLlama},  // Llama's names, with q/k/v biases
    {ModelFamily::Qwen3, &kLlama},  // Llama's names, with q/k norms
    {ModelFamily::InternLM2, &kInternLM2},
};

std::string layer_name(int64_t i, const char* suffix) {
  return "model.layers." + std::to_string(i) + "." + suffix;
}

Tensor take(std::map<std::string, Tensor>& hf, const std::string& name, const LayoutTable& table,
            const std::string& where) {
  auto it = hf.find(name);
  POLAR_CHECK(it != hf.end(), where, ": missing tensor \"", name, "\" (", table.name, " layout)");
  Tensor t = it->second;
  hf.erase(it);
  return t;
}

// Polar has no output-projection bias; a zero one (Llama attention_bias, InternLM2 bias) is exact.
void drop_zero_bias(std::map<std::string, Tensor>& hf, const std::string& name,
                    const std::string& where) {
  auto it = hf.find(name);
  if (it == hf.end()) return;
  POLAR_CHECK(it->second.count_nonzero().item<int64_t>() == 0, where, ": tensor \"", name,
              "\" is not zero; polar's attention has no output-projection bias, so this model "
              "cannot be imported exactly");
  hf.erase(it);
}

}  // namespace

const LayoutTable& layout_table(ModelFamily family) {
  for (const auto& [f, table] : kFamilyLayouts) {
    if (f == family) return *table;
  }
  throw Error(std::string("model family ") + family_info(family).name +
              " has no tensor layout table");
}

Tensor pack_wqkv(const Tensor& q, const Tensor& k, const Tensor& v, int64_t num_heads,
                 int64_t num_kv_heads) {
  const int64_t g = num_heads / num_kv_heads;
  const int64_t head_dim = q.size(0) / num_heads;
  std::vector<int64_t> rest(q.sizes().begin() + 1,
                            q.sizes().end());            // () for a bias, (hidden) for a weight
  auto grouped = [&](const Tensor& t, int64_t per_kv) {  // (Hkv, per_kv, D, ...)
    std::vector<int64_t> shape{num_kv_heads, per_kv, head_dim};
    shape.insert(shape.end(), rest.begin(), rest.end());
    return t.reshape(shape);
  };
  const Tensor packed =
      torch::cat({grouped(q, g), grouped(k, 1), grouped(v, 1)}, 1);  // (Hkv, g + 2, D, ...)
  std::vector<int64_t> out{num_kv_heads * (g + 2) * head_dim};
  out.insert(out.end(), rest.begin(), rest.end());
  return packed.reshape(out).contiguous();
}

std::vector<Tensor> unpack_wqkv(const Tensor& wqkv, int64_t num_heads, int64_t num_kv_heads,
                                int64_t head_dim, const std::string& what) {
  const int64_t g = num_heads / num_kv_heads;
  const int64_t rows = num_kv_heads * (g + 2) * head_dim;
  POLAR_CHECK(wqkv.dim() >= 1 && wqkv.size(0) == rows, what, ": expected ", rows,
              " rows (num_key_value_heads ", num_kv_heads, " x (", g,
              " query heads + k + v) x head_dim ", head_dim, "), got shape ", wqkv.sizes());
  std::vector<int64_t> rest(wqkv.sizes().begin() + 1, wqkv.sizes().end());
  std::vector<int64_t> shape{num_kv_heads, g + 2, head_dim};
  shape.insert(shape.end(), rest.begin(), rest.end());
  const Tensor grouped = wqkv.reshape(shape);  // (Hkv, g + 2, D, ...)
  auto flat = [&](const Tensor& t, int64_t heads) {
    std::vector<int64_t> out{heads * head_dim};
    out.insert(out.end(), rest.begin(), rest.end());
    return t.reshape(out).contiguous();
  };
  return {flat(grouped.narrow(1, 0, g), num_heads), flat(grouped.narrow(1, g, 1), num_kv_heads),
          flat(grouped.narrow(1, g + 1, 1), num_kv_heads)};
}

std::map<std::string, Tensor> hf_to_polar(ModelFamily family, const ModelConfig& shape,
                                          std::map<std::string, Tensor>& hf, bool with_head,
                                          const std::string& where) {
  const LayoutTable& table = layout_table(family);
  std::map<std::string, Tensor> out;
  for (const auto& rule : table.globals) out[rule.polar] = take(hf, rule.hf, table, where);
  for (int64_t i = 0; i < shape.num_layers; ++i) {
    for (const auto& rule : table.layer)
      out[layer_name(i, rule.polar)] = take(hf, layer_name(i, rule.hf), table, where);
    if (shape.qkv_bias) {
      for (const auto& rule : table.qkv_bias) {
        out[layer_name(i, rule.polar)] = take(hf, layer_name(i, rule.hf), table, where);
      }
    }
    if (shape.qk_norm()) {
      POLAR_CHECK(!table.qk_norm.empty(), where, ": the ", table.name,
                  " layout has no q/k norm tensors");
      for (const auto& rule : table.qk_norm)
        out[layer_name(i, rule.polar)] = take(hf, layer_name(i, rule.hf), table, where);
    }
    if (table.packed_qkv) {
      for (const char* kind : {"weight", "bias"}) {
        if (std::string(kind) == "bias" && !shape.qkv_bias) continue;
        const std::string name = layer_name(i, table.packed_qkv) + "." + kind;
        const auto qkv = unpack_wqkv(take(hf, name, table, where), shape.num_heads,
                                     shape.num_kv_heads, shape.head_size(), where + ": " + name);
        out[layer_name(i, "self_attn.q_proj.") + kind] = qkv[0];
        out[layer_name(i, "self_attn.k_proj.") + kind] = qkv[1];
        out[layer_name(i, "self_attn.v_proj.") + kind] = qkv[2];
      }
    }
    drop_zero_bias(hf, layer_name(i, table.o_bias), where);
  }
  if (with_head) out["score.weight"] = take(hf, table.reward_head, table, where);
  return out;
}

std::vector<std::pair<std::string, Tensor>> polar_to_hf(
    ModelFamily family, const ModelConfig& shape, const std::map<std::string, Tensor>& polar) {
  const LayoutTable& table = layout_table(family);
  auto get = [&](const std::string& name) {
    auto it = polar.find(name);
    POLAR_CHECK(it != polar.end(), "export: the model has no parameter \"", name, "\"");
    return it->second;
  };
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back(table.globals[0].hf, get(table.globals[0].polar));
  for (int64_t i = 0; i < shape.num_layers; ++i) {
    if (table.packed_qkv) {
      for (const char* kind : {"weight", "bias"}) {
        if (std::string(kind) == "bias" && !shape.qkv_bias) continue;
        out.emplace_back(layer_name(i, table.packed_qkv) + "." + kind,
                         pack_wqkv(get(layer_name(i, "self_attn.q_proj.") + kind),
                                   get(layer_name(i, "self_attn.k_proj.") + kind),
                                   get(layer_name(i, "self_attn.v_proj.") + kind), shape.num_heads,
                                   shape.num_kv_heads));
      }
      if (shape.qkv_bias)
        out.emplace_back(layer_name(i, table.o_bias), torch::zeros({shape.hidden_size}));
    }
    for (const auto& rule : table.layer)
      out.emplace_back(layer_name(i, rule.hf), get(layer_name(i, rule.polar)));
    if (shape.qkv_bias) {
      for (const auto& rule : table.qkv_bias)
        out.emplace_back(layer_name(i, rule.hf), get(layer_name(i, rule.polar)));
    }
    if (shape.qk_norm()) {
      POLAR_CHECK(!table.qk_norm.empty(), "export: the ", table.name,
                  " layout has no q/k norm tensors");
      for (const auto& rule : table.qk_norm)
        out.emplace_back(layer_name(i, rule.hf), get(layer_name(i, rule.polar)));
    }
  }
  for (size_t g = 1; g < table.globals.size(); ++g)
    out.emplace_back(table.globals[g].hf, get(table.globals[g].polar));
  out.emplace_back(table.reward_head, get("score.weight"));
  return out;
}

}  // namespace polar::io::hf
