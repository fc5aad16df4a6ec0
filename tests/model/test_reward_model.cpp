// RewardModel: HF parameter names, deterministic init, agreement with a naive per-head Llama
// reference, packed rows == sequences alone, padding invariance, gradients, checkpointing.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "polar/common/error.h"
#include "polar/data/batch.h"
#include "polar/loss/polar_loss.h"
#include "polar/model/reward_model.h"
#include "tiny_model.h"

namespace polar {
namespace {

using testutil::GroupBuilder;
using torch::Tensor;

std::vector<std::string> hf_names(int64_t layers, bool qkv_bias) {
  std::vector<std::string> names = {"model.embed_tokens.weight"};
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
      names.push_back(p + "self_attn." + proj + ".weight");
      if (qkv_bias) names.push_back(p + "self_attn." + proj + ".bias");
    }
    names.push_back(p + "self_attn.o_proj.weight");
    for (const char* proj : {"gate_proj", "up_proj", "down_proj"})
      names.push_back(p + "mlp." + proj + ".weight");
    names.push_back(p + "input_layernorm.weight");
    names.push_back(p + "post_attention_layernorm.weight");
  }
  names.push_back("model.norm.weight");
  names.push_back("score.weight");
  return names;
}

std::vector<std::string> names_of(RewardModel& model) {
  std::vector<std::string> out;
  for (const auto& p : model->named_parameters()) out.push_back(p.key());
  return out;
}

Tensor param(RewardModel& model, const std::string& name) {
  auto params = model->named_parameters();
  const Tensor* p = params.find(name);
  if (!p) throw std::runtime_error("no parameter " + name);
  return *p;
}

TEST(RewardModel, ParameterNamesAreHuggingFace) {
  for (bool bias : {false, true}) {
    RewardModel model(testutil::tiny_config(2, bias));
    EXPECT_EQ(names_of(model), hf_names(2, bias)) << "qkv_bias " << bias;
    EXPECT_EQ(param(model, "score.weight").sizes(), (std::vector<int64_t>{1, 64}));
    EXPECT_EQ(param(model, "model.embed_tokens.weight").sizes(), (std::vector<int64_t>{512, 64}));
    EXPECT_EQ(param(model, "model.layers.1.self_attn.k_proj.weight").sizes(),
              (std::vector<int64_t>{32, 64}));
    EXPECT_EQ(param(model, "model.layers.0.mlp.down_proj.weight").sizes(),
              (std::vector<int64_t>{64, 172}));
    int64_t count = 0;
    for (const auto& p : model->parameters()) count += p.numel();
    EXPECT_EQ(count, model->config().num_parameters());
  }
}

TEST(RewardModel, ResetParametersIsDeterministic) {
  RewardModel a(testutil::tiny_config(2, true)), b(testutil::tiny_config(2, true));
  a->reset_parameters(11);
  b->reset_parameters(11);
  for (const auto& name : hf_names(2, true)) {
    EXPECT_TRUE(torch::equal(param(a, name), param(b, name))) << name;
  }
  EXPECT_TRUE(torch::all(param(a, "model.norm.weight") == 1).item<bool>());
  EXPECT_TRUE(
      torch::all(param(a, "model.layers.1.post_attention_layernorm.weight") == 1).item<bool>());
  EXPECT_TRUE(torch::all(param(a, "model.layers.0.self_attn.q_proj.bias") == 0).item<bool>());
  const double std = param(a, "model.embed_tokens.weight").std().item<double>();
  EXPECT_NEAR(std, 0.02, 0.002);
  b->reset_parameters(12);
  EXPECT_FALSE(torch::equal(param(a, "model.layers.0.mlp.up_proj.weight"),
                            param(b, "model.layers.0.mlp.up_proj.weight")));
  // reset_reward_head touches score.weight only.
  const Tensor embed = param(a, "model.embed_tokens.weight").clone();
  const Tensor score = param(a, "score.weight").clone();
  a->reset_reward_head(99);
  EXPECT_TRUE(torch::equal(embed, param(a, "model.embed_tokens.weight")));
  EXPECT_FALSE(torch::equal(score, param(a, "score.weight")));
}

// HF LlamaForSequenceClassification for one sequence, written out per head with explicit RoPE
// (rotate_half; linear or llama3 frequencies), Qwen3's q/k norms, repeat_kv mapping, causal
// softmax and SwiGLU, in double.
double naive_reward(RewardModel& model, const std::vector<int64_t>& tokens) {
  const ModelConfig& c = model->config();
  const auto P = [&](const std::string& n) { return param(model, n).to(torch::kDouble); };
  const auto L = static_cast<int64_t>(tokens.size());
  const int64_t D = c.head_size(), half = D / 2, rep = c.num_heads / c.num_kv_heads;
  const auto rms = [&](const Tensor& x, const Tensor& w) {
    return w * (x / torch::sqrt(x.square().mean(-1, true) + c.rms_eps));
  };
  const auto linear = [&](const Tensor& x, const std::string& n, bool bias) {
    Tensor y = torch::matmul(x, P(n + ".weight").t());
    return bias ? y + P(n + ".bias") : y;
  };
  // angle[p][i] = p * inv_freq(i), inv_freq(i) = theta^(-2i/D) scaled by the rope type.
  const auto inv_freq = [&](int64_t i) {
    const double f = std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / D);
    if (c.rope_type == RopeType::Linear) return f / c.rope_scaling;
    const double wavelen = 2 * M_PI / f;
    const double old = static_cast<double>(c.rope_original_max_position);
    if (wavelen < old / c.rope_high_freq_factor) return f;                  // high frequencies
    if (wavelen > old / c.rope_low_freq_factor) return f / c.rope_scaling;  // low frequencies
    const double s = (old / wavelen - c.rope_low_freq_factor) /
                     (c.rope_high_freq_factor - c.rope_low_freq_factor);
    return (1 - s) * f / c.rope_scaling + s * f;
  };
  Tensor angle = torch::empty({L, half}, torch::kDouble);
  for (int64_t p = 0; p < L; ++p)
    for (int64_t i = 0; i < half; ++i) angle[p][i] = static_cast<double>(p) * inv_freq(i);
  const Tensor cos = angle.cos(), sin = angle.sin();
  const auto rope = [&](const Tensor& x) {  // (L, D)
    const Tensor x1 = x.narrow(1, 0, half), x2 = x.narrow(1, half, half);
    return torch::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, 1);
  };
  Tensor x = P("model.embed_tokens.weight")
                 .index_select(0, torch::tensor(tokens, torch::kInt64));  // (L, H)
  const Tensor future = torch::ones({L, L}, torch::kBool).triu(1);
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    const Tensor h = rms(x, P(p + "input_layernorm.weight"));
    const Tensor q = linear(h, p + "self_attn.q_proj", c.qkv_bias);
    const Tensor k = linear(h, p + "self_attn.k_proj", c.qkv_bias);
    const Tensor v = linear(h, p + "self_attn.v_proj", c.qkv_bias);
    std::vector<Tensor> heads;
    for (int64_t head = 0; head < c.num_heads; ++head) {
      const int64_t kv = head / rep;
      Tensor qh = q.narrow(1, head * D, D), kh = k.narrow(1, kv * D, D);
      if (c.qk_norm()) {  // Qwen3: RMSNorm of each head before RoPE
        qh = rms(qh, P(p + "self_attn.q_norm.weight"));
        kh = rms(kh, P(p + "self_attn.k_norm.weight"));
      }
      qh = rope(qh);
      kh = rope(kh);
      const Tensor vh = v.narrow(1, kv * D, D);
      const Tensor scores = (torch::matmul(qh, kh.t()) / std::sqrt(static_cast<double>(D)))
                                .masked_fill(future, -INFINITY);
      heads.push_back(torch::matmul(torch::softmax(scores, 1), vh));
    }
    x = x + linear(torch::cat(heads, 1), p + "self_attn.o_proj", false);
    const Tensor h2 = rms(x, P(p + "post_attention_layernorm.weight"));
    x = x + linear(torch::silu(linear(h2, p + "mlp.gate_proj", false)) *
                       linear(h2, p + "mlp.up_proj", false),
                   p + "mlp.down_proj", false);
  }
  const Tensor last = rms(x[L - 1], P("model.norm.weight"));
  return torch::dot(last, P("score.weight")[0]).item<double>();
}

TEST(RewardModel, MatchesNaiveLlamaReference) {
  ModelConfig c = testutil::tiny_config(2, true);
  c.rope_theta = 500.0;  // short wavelengths, so a RoPE convention error cannot hide
  c.rope_scaling = 2.0;
  c.rms_eps = 1e-5;
  RewardModel model = testutil::tiny_model(c);
  model->to(torch::kDouble);
  GroupBuilder builder(3);
  const std::vector<int64_t> tokens = [&] {
    auto t = builder.random_tokens(37);
    return std::vector<int64_t>(t.begin(), t.end());
  }();
  const double expected = naive_reward(model, tokens);
  const double got = testutil::reward_alone(model, tokens).item<double>();
  EXPECT_GT(std::abs(expected), 0.05);  // a reward far from zero, so the comparison means something
  // cos/sin are computed in fp32 as HF does; the reference uses exact angles: ~1e-7 relative.
  EXPECT_NEAR(got, expected, 1e-5 * std::max(1.0, std::abs(expected)));
}

TEST(RewardModel, MatchesNaiveReferenceForQwen3AndLlama3) {
  GroupBuilder builder(4);
  const auto t = builder.random_tokens(61);  // positions past the llama3 ramp's 16 and 64
  const std::vector<int64_t> tokens(t.begin(), t.end());
  for (ModelConfig c : {testutil::tiny_qwen3_config(), testutil::tiny_llama3_config(1)}) {
    SCOPED_TRACE(c.to_json().dump());
    c.rms_eps = 1e-5;
    RewardModel model = testutil::tiny_model(c);
    model->to(torch::kDouble);
    const double expected = naive_reward(model, tokens);
    const double got = testutil::reward_alone(model, tokens).item<double>();
    EXPECT_GT(std::abs(expected), 0.05);
    EXPECT_NEAR(got, expected, 1e-5 * std::max(1.0, std::abs(expected)));
    // Not vacuous: plain RoPE, or no q/k norms, gives another reward.
    ModelConfig plain = c;
    plain.architecture = "llama";
    plain.head_dim = 0;
    plain.rope_type = RopeType::Linear;
    plain.rope_scaling = 1.0;
    RewardModel other = testutil::tiny_model(plain);
    other->to(torch::kDouble);
    if (!c.qk_norm()) {
      torch::NoGradGuard no_grad;
      for (auto& p : other->named_parameters()) p.value().copy_(param(model, p.key()));
      EXPECT_GT(std::abs(testutil::reward_alone(other, tokens).item<double>() - got), 1e-3);
    }
  }
}

struct PackCase {
  int64_t kv_heads;
  bool qkv_bias;
  const char* family = "";  // "qwen3" or "llama3": that tiny config instead
};

class RewardModelPacking : public ::testing::TestWithParam<PackCase> {};

TEST_P(RewardModelPacking, PackedRewardsEqualSequencesAlone) {
  ModelConfig config = testutil::tiny_config(GetParam().kv_heads, GetParam().qkv_bias);
  if (GetParam().family == std::string("qwen3")) config = testutil::tiny_qwen3_config(2);
  if (GetParam().family == std::string("llama3")) config = testutil::tiny_llama3_config(1);
  RewardModel model = testutil::tiny_model(config);
  GroupBuilder builder(5);
  builder.add_random(7, {5, 1, 12}, 0);
  builder.add_random(3, {20, 2}, 1);
  builder.add_random(1, {1, 4}, 0);    // a length-2 sequence
  builder.add_random(25, {10, 6}, 2);  // 35 tokens: longer than a 30-token row
  std::vector<double> alone;
  for (const GroupRef& g : builder.groups())
    for (size_t c = 0; c < g.candidates.size(); ++c)
      alone.push_back(testutil::reward_alone(model, testutil::sequence_of(g, c)).item<double>());

  for (int64_t row_tokens : {30, 64, 200}) {
    const PackedBatch batch = pack_groups(builder.groups(), {row_tokens, 0});
    const Tensor rewards = model->forward(batch);
    ASSERT_EQ(rewards.scalar_type(), torch::kFloat);
    ASSERT_EQ(rewards.size(0), static_cast<int64_t>(alone.size()));
    double spread = 0;
    for (size_t i = 0; i < alone.size(); ++i) {
      // fp32: same math in a different matmul shape, ~1e-7 relative.
      EXPECT_NEAR(rewards[i].item<double>(), alone[i], 1e-5)
          << "row_tokens " << row_tokens << " seq " << i;
      spread = std::max(spread, std::abs(alone[i] - alone[0]));
    }
    EXPECT_GT(spread, 0.05);  // sequences really give different rewards
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, RewardModelPacking,
                         ::testing::Values(PackCase{4, false}, PackCase{2, true},
                                           PackCase{1, false}, PackCase{2, false, "qwen3"},
                                           PackCase{1, false, "llama3"}));

// The same packed batch with extra padding columns, an all-padding row and random tokens in the
// padding: nothing the rewards depend on may change, and nothing may be NaN.
TEST(RewardModel, PaddingChangesNothing) {
  RewardModel model = testutil::tiny_model(testutil::tiny_config(2, true));
  GroupBuilder builder(9);
  builder.add_random(6, {4, 9}, 0);
  builder.add_random(2, {3, 1, 5}, 0);
  const PackedBatch batch = pack_groups(builder.groups(), {16, 0});
  const int64_t B = batch.tokens.size(0), T = batch.tokens.size(1), B2 = B + 1, T2 = T + 5;
  ASSERT_GT(B, 1);

  PackedBatch padded = batch;
  padded.tokens = torch::randint(1, 512, {B2, T2}, torch::kInt64);  // junk in the padding
  padded.positions = torch::zeros({B2, T2}, torch::kInt64);
  padded.segments = torch::zeros({B2, T2}, torch::kInt64);
  // Row r of the batch becomes row r + 1 (row 0 is all padding); columns T.. are extra padding.
  padded.tokens.slice(0, 1).slice(1, 0, T).copy_(
      torch::where(batch.segments > 0, batch.tokens, 77));
  padded.positions.slice(0, 1).slice(1, 0, T).copy_(batch.positions);
  padded.segments.slice(0, 1).slice(1, 0, T).copy_(batch.segments);
  const Tensor row = torch::div(batch.reward_index, T, "floor"), col = batch.reward_index % T;
  padded.reward_index = (row + 1) * T2 + col;
  padded.layout = attention_layout(padded.segments, padded.context);  // the packer's is for `batch`

  const Tensor r1 = model->forward(batch);
  const Tensor r2 = model->forward(padded);
  // fp32: other matmul shapes round differently (~1e-6 here), as in the packing test.
  EXPECT_TRUE(torch::allclose(r1, r2, 0, 1e-5)) << r1 << r2;
  EXPECT_FALSE(
      torch::equal(batch.tokens, padded.tokens.slice(0, 1).slice(1, 0, T)));  // junk differs

  const Tensor hidden = model->backbone(padded.tokens, padded.positions, padded.segments);
  EXPECT_TRUE(torch::isfinite(hidden).all().item<bool>());
  const PairLoss loss = pair_loss_reference(r2, padded.pair_pos, padded.pair_neg, 3, {});
  loss.loss.backward();
  for (const auto& p : model->named_parameters())
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
}

TEST(RewardModel, DoubleGradientMatchesFiniteDifferences) {
  RewardModel model = testutil::tiny_model(testutil::tiny_config(2, true));
  model->to(torch::kDouble);
  GroupBuilder builder(13);
  builder.add_random(5, {4, 3, 6}, 0);
  builder.add_random(3, {2, 7}, 0);
  const PackedBatch batch = pack_groups(builder.groups(), {20, 0});
  const LossOptions options{0.3, 0.05};
  const auto loss_value = [&] {
    torch::NoGradGuard no_grad;
    return pair_loss_reference(model->forward(batch), batch.pair_pos, batch.pair_neg, 5, options)
        .loss.item<double>();
  };
  const PairLoss loss =
      pair_loss_reference(model->forward(batch), batch.pair_pos, batch.pair_neg, 5, options);
  ASSERT_EQ(loss.loss.scalar_type(), torch::kDouble);
  loss.loss.backward();

  const int64_t token = batch.tokens[0][0].item<int64_t>();
  const std::vector<std::pair<std::string, int64_t>> probes = {
      {"model.embed_tokens.weight", token * 64 + 3},
      {"model.layers.0.self_attn.q_proj.weight", 5 * 64 + 9},
      {"model.layers.0.self_attn.k_proj.weight", 17 * 64 + 2},
      {"model.layers.0.self_attn.v_proj.bias", 6},
      {"model.layers.1.self_attn.o_proj.weight", 40 * 64 + 33},
      {"model.layers.1.mlp.down_proj.weight", 13 * 172 + 100},
      {"model.layers.1.input_layernorm.weight", 4},
      {"model.norm.weight", 9},
      {"score.weight", 0},
  };
  const double h = 1e-5;
  for (const auto& [name, index] : probes) {
    Tensor p = param(model, name);
    const double analytic = p.grad().view(-1)[index].item<double>();
    Tensor entry = p.data().view(-1)[index];
    const double original = entry.item<double>();
    entry.fill_(original + h);
    const double up = loss_value();
    entry.fill_(original - h);
    const double down = loss_value();
    entry.fill_(original);
    const double numeric = (up - down) / (2 * h);
    // Central differences in double: truncation ~h^2, rounding ~1e-16 / h.
    EXPECT_NEAR(analytic, numeric, 1e-8 + 1e-6 * std::abs(numeric)) << name << "[" << index << "]";
    EXPECT_GT(std::abs(numeric), 1e-6)
        << name << " has a vanishing gradient: the probe tests nothing";
  }
}

TEST(RewardModel, ActivationCheckpointingGivesSameGradients) {
  GroupBuilder builder(21);
  builder.add_random(6, {5, 8}, 0);
  builder.add_random(4, {3, 2, 9}, 0);
  const PackedBatch batch = pack_groups(builder.groups(), {24, 0});
  for (int variant = 0; variant < 3; ++variant) {
    const bool freeze_embeddings = variant == 1;
    const ModelConfig config =
        variant == 2 ? testutil::tiny_qwen3_config() : testutil::tiny_config(2, true);
    RewardModel plain = testutil::tiny_model(config);
    RewardModel ckpt = testutil::tiny_model(config);
    ckpt->set_activation_checkpointing(true);
    if (freeze_embeddings) {
      param(plain, "model.embed_tokens.weight").set_requires_grad(false);
      param(ckpt, "model.embed_tokens.weight").set_requires_grad(false);
    }
    const PairLoss a =
        pair_loss_reference(plain->forward(batch), batch.pair_pos, batch.pair_neg, 3, {});
    const PairLoss b =
        pair_loss_reference(ckpt->forward(batch), batch.pair_pos, batch.pair_neg, 3, {});
    EXPECT_EQ(a.loss.item<double>(), b.loss.item<double>());
    a.loss.backward();
    b.loss.backward();
    const auto ga = testutil::gradients(plain), gb = testutil::gradients(ckpt);
    const auto names = names_of(plain);
    for (size_t i = 0; i < ga.size(); ++i) {
      if (freeze_embeddings && names[i] == "model.embed_tokens.weight") continue;
      EXPECT_GT(ga[i].abs().max().item<double>(), 0) << names[i];
      EXPECT_TRUE(torch::allclose(ga[i], gb[i], 1e-6, 1e-9)) << names[i];
    }
  }
}

// The sampler's path: decode() over a KV cache (prefill, then one token at a time, a padded
// row) gives the hidden states of backbone() over the whole sequence, for every family's
// numerics, since both run the same layers.
TEST(RewardModel, CachedDecodeEqualsBackbone) {
  for (const ModelConfig& c : {testutil::tiny_config(2, true), testutil::tiny_qwen3_config(),
                               testutil::tiny_llama3_config(1)}) {
    SCOPED_TRACE(c.architecture);
    RewardModel model = testutil::tiny_model(c, 13);
    model->eval();
    auto gen = at::detail::createCPUGenerator(2);
    const int64_t T = 70;  // past the llama3 ramp's original context of 64
    const Tensor tokens = torch::randint(1, c.vocab_size, {2, T}, gen);
    const Tensor positions = torch::arange(T).repeat({2, 1});
    Tensor want;
    {
      torch::NoGradGuard no_grad;
      want =
          model->final_norm(model->backbone(tokens, positions, torch::ones({2, T}, torch::kInt64)));
    }
    KvCache cache = model->new_cache(2, T);
    std::vector<Tensor> got{model->decode(tokens.narrow(1, 0, 9), positions.narrow(1, 0, 9),
                                          torch::ones({2, 9}, torch::kBool), cache)};
    for (int64_t t = 9; t < T; ++t) {
      got.push_back(model->decode(tokens.narrow(1, t, 1), positions.narrow(1, t, 1),
                                  torch::ones({2, t + 1}, torch::kBool), cache));
    }
    EXPECT_EQ(cache.length, T);
    const Tensor all = model->final_norm(torch::cat(got, 1));
    EXPECT_LT((all - want).abs().max().item<double>(), 1e-4);
    EXPECT_GT(want.std().item<double>(), 0.3);
    // A row left-padded by 3 (masked keys, positions from 0 at the first real token) decodes
    // its real tokens as the unpadded row does.
    KvCache padded = model->new_cache(1, T + 3);
    const Tensor row = torch::cat({torch::zeros({1, 3}, torch::kInt64), tokens.narrow(0, 0, 1)}, 1);
    const Tensor pos =
        torch::cat({torch::zeros({1, 3}, torch::kInt64), positions.narrow(0, 0, 1)}, 1);
    Tensor mask = torch::ones({1, T + 3}, torch::kBool);
    mask.narrow(1, 0, 3).fill_(false);
    const Tensor h = model->final_norm(model->decode(row, pos, mask, padded)).narrow(1, 3, T);
    EXPECT_LT((h - want.narrow(0, 0, 1)).abs().max().item<double>(), 1e-4);
  }
}

TEST(RewardModel, DtypesOfRewards) {
  RewardModel model = testutil::tiny_model(testutil::tiny_config(2, false));
  GroupBuilder builder(4);
  builder.add_random(6, {5, 8}, 0);
  const PackedBatch batch = pack_groups(builder.groups(), {64, 0});
  const Tensor r32 = model->forward(batch);
  model->to(torch::kBFloat16);
  const Tensor r16 = model->forward(batch);
  EXPECT_EQ(r16.scalar_type(), torch::kFloat);  // the head computes in fp32 for bf16 models
  EXPECT_TRUE(torch::allclose(r16, r32, 0.1, 0.1)) << r16 << r32;
  model->to(torch::kDouble);
  EXPECT_EQ(model->forward(batch).scalar_type(), torch::kDouble);
}

TEST(RewardModel, RejectsBadInput) {
  RewardModel model(testutil::tiny_config());
  GroupBuilder builder(4);
  builder.add_random(3, {2, 2}, 0);
  PackedBatch batch = pack_groups(builder.groups(), {64, 0});
  PackedBatch bad_token = batch;
  bad_token.tokens = batch.tokens.clone();
  bad_token.tokens[0][0] = 512;
  EXPECT_THROW(model->forward(bad_token), Error);
  PackedBatch bad_index = batch;
  bad_index.reward_index = batch.reward_index + batch.tokens.numel();
  EXPECT_THROW(model->forward(bad_index), Error);
  PackedBatch bad_shape = batch;
  bad_shape.positions = batch.positions.slice(1, 1);
  EXPECT_THROW(model->forward(bad_shape), Error);
  // Varlen attention is CUDA only and says so instead of crashing.
  model->set_attention_impl(AttentionImpl::Varlen);
  EXPECT_THROW(model->forward(batch), Error);
}

}  // namespace
}  // namespace polar
