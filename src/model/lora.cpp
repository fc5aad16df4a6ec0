// LoRA adapters on the reward model's projections (see polar/model/lora.h).
#include "polar/model/lora.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "polar/common/config_visitors.h"
#include "polar/common/error.h"
#include "polar/model/config.h"

namespace polar {

using nlohmann::json;
using torch::Tensor;

namespace {

const char* const kTargets[] = {"q", "k", "v", "o", "gate", "up", "down"};

// Holds one "weight" parameter (lora_A, lora_B), so names read ...q_proj.lora_A.weight.
struct LoraMatrix : torch::nn::Module {
  explicit LoraMatrix(Tensor w) { weight = register_parameter("weight", std::move(w)); }
  Tensor weight;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_norm_parameter(const std::string& name) {
  return name == "model.norm.weight" || name.find("layernorm.weight") != std::string::npos;
}

// Adapter hosts with their module names, in registration order.
std::vector<std::pair<std::string, LoraHost*>> lora_hosts(const torch::nn::Module& model) {
  std::vector<std::pair<std::string, LoraHost*>> out;
  for (const auto& item : model.named_modules())
    if (auto* host = dynamic_cast<LoraHost*>(item.value().get()))
      out.emplace_back(item.key(), host);
  return out;
}

}  // namespace

std::string LoraConfig::module_name(const std::string& target) { return target + "_proj"; }

int64_t LoraConfig::adapter_parameters(const ModelConfig& c) const {
  if (!enabled()) return 0;
  const int64_t H = c.hidden_size, Q = c.q_size(), KV = c.num_kv_heads * c.head_size();
  const int64_t I = c.intermediate_size;
  int64_t per_layer = 0;  // rank * (in + out) of each target
  for (const auto& t : targets) {
    if (t == "q" || t == "o") per_layer += rank * (H + Q);
    if (t == "k" || t == "v") per_layer += rank * (H + KV);
    if (t == "gate" || t == "up" || t == "down") per_layer += rank * (H + I);
  }
  return per_layer * c.num_layers;
}

int64_t LoraConfig::trainable_parameters(const ModelConfig& c) const {
  const int64_t norms = train_norms ? (2 * c.num_layers + 1) * c.hidden_size : 0;
  return adapter_parameters(c) + c.hidden_size + norms;
}

bool is_lora_target(const std::string& name) {
  for (const char* t : kTargets)
    if (name == t) return true;
  return false;
}

LoraConfig LoraConfig::from_json(const json& j, const std::string& where) {
  LoraConfig c;
  SchemaReader(j, where).read(c);
  return c;
}

json LoraConfig::to_json() const { return SchemaWriter::write(*this); }

LoraAdapter::LoraAdapter(torch::nn::Module& host, const Tensor& like, const LoraConfig& config,
                         uint64_t seed)
    : scale(config.scale()), dropout(config.dropout) {
  const int64_t out = like.size(0), in = like.size(1), r = config.rank;
  auto gen = at::detail::createCPUGenerator(seed);
  Tensor a;
  if (config.init == LoraInit::Kaiming) {
    // kaiming_uniform_(A, a=sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in).
    const double bound = std::sqrt(1.0 / 3.0) * std::sqrt(3.0 / static_cast<double>(in));
    a = torch::rand({r, in}, gen, torch::kFloat) * (2 * bound) - bound;
  } else {
    a = torch::normal(0.0, 1.0 / static_cast<double>(r), {r, in}, gen, torch::kFloat);
  }
  const auto options = torch::TensorOptions().dtype(torch::kFloat).device(like.device());
  A = host.register_module("lora_A", std::make_shared<LoraMatrix>(a.to(options.device())))->weight;
  B = host.register_module("lora_B", std::make_shared<LoraMatrix>(torch::zeros({out, r}, options)))
          ->weight;
}

Tensor LoraAdapter::apply(const Tensor& x, const Tensor& y, bool training) const {
  const Tensor in = dropout > 0 ? torch::dropout(x, dropout, training) : x;
  // Outside autocast the adapter runs in its own dtype (peft casts x to lora_A's dtype) and the
  // sum comes back in the base output's.
  const Tensor xa =
      in.scalar_type() == A.scalar_type() || at::autocast::is_autocast_enabled(at::kCUDA)
          ? in
          : in.to(A.scalar_type());
  const Tensor delta = torch::linear(torch::linear(xa, A), B) * scale;
  return y + delta.to(y.scalar_type());
}

Tensor LoraAdapter::delta_weight() const {
  return torch::matmul(B.detach().to(torch::kFloat), A.detach().to(torch::kFloat)) * scale;
}

int64_t add_lora(torch::nn::Module& model, const LoraConfig& config, uint64_t seed) {
  POLAR_CHECK(config.enabled(), "add_lora: model.lora.rank must be positive");
  POLAR_CHECK(!has_lora(model), "add_lora: the model already has LoRA adapters");
  int64_t n = 0;
  std::vector<int64_t> per_target(config.targets.size(), 0);
  for (auto& [name, host] : lora_hosts(model)) {
    for (size_t t = 0; t < config.targets.size(); ++t) {
      if (!ends_with(name, "." + LoraConfig::module_name(config.targets[t]))) continue;
      auto* module = dynamic_cast<torch::nn::Module*>(host);
      // One seed per layer, so a layer's A does not depend on which other targets are on.
      host->lora = std::make_shared<LoraAdapter>(*module, host->lora_base_weight(), config,
                                                 seed * 1000003u + std::hash<std::string>{}(name));
      ++per_target[t];
      ++n;
    }
  }
  for (size_t t = 0; t < config.targets.size(); ++t)
    POLAR_CHECK(per_target[t] > 0, "model.lora.targets: \"", config.targets[t],
                "\" matches no layer of the model");
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    const bool trainable = is_lora_parameter(name) || name == "score.weight" ||
                           (config.train_norms && is_norm_parameter(name));
    item.value().set_requires_grad(trainable);
  }
  return n;
}

bool has_lora(const torch::nn::Module& model) {
  for (auto& [name, host] : lora_hosts(model))
    if (host->lora) return true;
  return false;
}

bool is_lora_parameter(const std::string& name) {
  return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos;
}

void merge_lora(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& [name, host] : lora_hosts(model)) {
    if (!host->lora) continue;
    Tensor& w = host->lora_base_weight();
    const Tensor delta = host->lora->delta_weight().to(w.device());
    w.copy_((w.to(torch::kFloat) + delta).to(w.scalar_type()));
    auto* module = dynamic_cast<torch::nn::Module*>(host);
    module->unregister_module("lora_A");
    module->unregister_module("lora_B");
    host->lora.reset();
  }
  for (auto& p : model.parameters()) p.set_requires_grad(true);
}

int64_t cast_frozen_matrices(torch::nn::Module& model, torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  int64_t n = 0;
  for (auto& item : model.named_parameters()) {
    Tensor& p = item.value();
    if (p.dim() != 2 || p.requires_grad() || p.scalar_type() == dtype) continue;
    p.set_data(p.detach().to(dtype));
    ++n;
  }
  return n;
}

std::vector<std::pair<std::string, Tensor>> checkpoint_parameters(const torch::nn::Module& model) {
  const bool lora = has_lora(model);
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& p : model.named_parameters())
    if (!lora || p.value().requires_grad()) out.emplace_back(p.key(), p.value().detach());
  return out;
}

std::string base_fingerprint(const torch::nn::Module& model) {
  // Four independent multiply-xorshift lanes over 8-byte words (one dependent chain would
  // hash a 7B model at a quarter of the speed), folded at the end.
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
  uint64_t lanes[4] = {0x243F6A8885A308D3ull, 0x13198A2E03707344ull, 0xA4093822299F31D0ull,
                       0x082EFA98EC4E6C89ull};
  const auto mix = [&](uint64_t& h, uint64_t w) {
    h ^= w;
    h *= kMul;
    h ^= h >> 29;
  };
  const auto mix_bytes = [&](const void* data, size_t n) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
      uint64_t w[4];
      std::memcpy(w, bytes + i, 32);
      mix(lanes[0], w[0]);
      mix(lanes[1], w[1]);
      mix(lanes[2], w[2]);
      mix(lanes[3], w[3]);
    }
    for (; i < n; ++i) mix(lanes[i % 4], bytes[i] + 0x100ull * (i + 1));
    mix(lanes[0], n);
  };
  for (const auto& p : model.named_parameters()) {
    if (is_lora_parameter(p.key())) continue;
    mix_bytes(p.key().data(), p.key().size());
    for (int64_t s : p.value().sizes()) mix(lanes[1], static_cast<uint64_t>(s));
    const Tensor v = p.value().detach().to(torch::kCPU, torch::kFloat).contiguous();
    mix_bytes(v.data_ptr(), v.nbytes());
  }
  uint64_t h = 0;
  for (uint64_t lane : lanes) mix(h, lane);
  return fmt::format("{:016x}", h);
}

}  // namespace polar
