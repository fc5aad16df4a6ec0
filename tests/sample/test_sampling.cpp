// The sampler's pieces on a tiny random causal LM: the top-k/top-p filter
// against a plain reference, the first-step token frequencies against the
// filtered softmax (chi-square test with a fixed seed), seeds and batching, and
// the KV cache against a full recompute and the reward model's decoder.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <iostream>
#include <numeric>

#include "polar/sample/generate.h"
#include "sample_test_util.h"

namespace polar::sample {
namespace {

// transformers' semantics written plainly: softmax(logits / T) over the top-k
// logits, then the most likely tokens until their mass reaches top_p (a token
// is kept while the mass of the tokens ranked above it is below top_p),
// renormalised.
std::vector<double> reference_probs(const std::vector<double>& logits, double temperature,
                                    int64_t top_k, double top_p) {
  const size_t V = logits.size();
  std::vector<size_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return logits[a] > logits[b]; });
  const size_t k = top_k > 0 ? std::min<size_t>(V, top_k) : V;
  std::vector<double> p(V, 0.0);
  double z = 0;
  for (size_t r = 0; r < k; ++r) z += std::exp((logits[order[r]] - logits[order[0]]) / temperature);
  double above = 0;
  double kept = 0;
  for (size_t r = 0; r < k; ++r) {
    const double q = std::exp((logits[order[r]] - logits[order[0]]) / temperature) / z;
    if (above >= top_p) break;
    p[order[r]] = q;
    kept += q;
    above += q;
  }
  for (double& x : p) x /= kept;
  return p;
}

std::vector<double> to_vector(const torch::Tensor& t) {
  const auto c = t.to(torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

TEST(SampleFilter, MatchesThePlainReference) {
  auto gen = at::detail::createCPUGenerator(3);
  const auto logits = torch::randn({97}, gen) * 2.0;
  struct Case {
    double temperature;
    int64_t top_k;
    double top_p;
  };
  for (const Case& c : {Case{1.0, 50, 0.9}, Case{0.5, 10, 1.0}, Case{1.3, 0, 0.7},
                        Case{0.7, 5, 0.3}, Case{1.0, 0, 1.0}}) {
    SamplingParams p;
    p.temperature = c.temperature;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    const auto got = to_vector(filtered_probs(logits, p));
    const auto want = reference_probs(to_vector(logits), c.temperature, c.top_k, c.top_p);
    int64_t support = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-6)
          << "token " << i << " T=" << c.temperature << " k=" << c.top_k;
      support += got[i] > 0;
    }
    if (c.top_k > 0) {
      EXPECT_LE(support, c.top_k);
    }
    if (c.top_p < 1.0 || c.top_k > 0) {
      EXPECT_LT(support, 97);
    }  // the filter did cut something
  }
  // top_p so small that only the most likely token survives.
  SamplingParams p;
  p.top_p = 1e-6;
  const auto one = filtered_probs(logits, p);
  EXPECT_DOUBLE_EQ(one[logits.argmax().item<int64_t>()].item<double>(), 1.0);
}

TEST(SampleFilter, FirstStepFrequenciesMatchTheFilteredSoftmax) {
  testutil::OneThread one_thread;
  const CausalLM lm = testutil::tiny_lm();
  const std::vector<int32_t> prompt = lm.tokenizer().encode("the capital of China is");
  SamplingParams p;
  p.temperature = 0.8;
  p.top_k = 40;
  p.top_p = 0.85;
  p.max_new_tokens = 1;
  // The model's next-token logits, computed independently of generate().
  std::vector<int64_t> ids{lm.tokenizer().special().bos};
  ids.insert(ids.end(), prompt.begin(), prompt.end());
  const int64_t T = static_cast<int64_t>(ids.size());
  KvCache cache = lm.new_cache(1, T);
  const auto logits = lm.step(torch::tensor(ids).view({1, T}), torch::arange(T).view({1, T}),
                              torch::ones({1, T}, torch::kBool), cache)[0];
  const auto want = reference_probs(to_vector(logits), p.temperature, p.top_k, p.top_p);

  const int64_t n = 20000;
  std::vector<uint64_t> seeds;
  for (int64_t i = 0; i < n; ++i) seeds.push_back(sample_seed(42, "policy", 0, i));
  const auto out =
      generate(lm, std::vector<std::vector<int32_t>>(n, prompt), seeds, p, GenerateOptions{1000});
  std::vector<double> count(want.size(), 0.0);
  for (const auto& g : out) {
    const int64_t id = g.ids.empty() ? lm.tokenizer().special().eos : g.ids[0];
    ASSERT_GT(want[id], 0.0) << "token " << id << " is outside the top-k/top-p set";
    count[id] += 1;
  }
  double chi2 = 0;
  int64_t support = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] == 0) continue;
    ++support;
    const double e = want[i] * n;
    chi2 += (count[i] - e) * (count[i] - e) / e;
  }
  // Not vacuous: several tokens compete. For df = support - 1 the 0.1% tail of
  // chi-square lies below df + 3.1 sqrt(2 df) + 10 (Wilson-Hilferty, df <= 40);
  // a wrong temperature or filter moves chi2 into the thousands.
  ASSERT_GE(support, 5);
  const double df = static_cast<double>(support - 1);
  EXPECT_LT(chi2, df + 3.1 * std::sqrt(2 * df) + 10) << "support " << support;
  std::cout << "  first-step tokens: support " << support << ", chi2 " << chi2 << " (df " << df
            << ")\n";
}

TEST(SampleFilter, SameSeedSameTextWhateverTheBatch) {
  testutil::OneThread one_thread;
  const CausalLM lm = testutil::tiny_lm();
  const std::vector<std::vector<int32_t>> prompts = {
      lm.tokenizer().encode("the policy says"),
      lm.tokenizer().encode("a good answer to the question is"), lm.tokenizer().encode("Beijing")};
  SamplingParams p;
  p.max_new_tokens = 16;
  const std::vector<uint64_t> seeds = {sample_seed(0, "a", 0, 0), sample_seed(0, "a", 1, 0),
                                       sample_seed(0, "a", 2, 0)};
  const auto one = generate(lm, prompts, seeds, p, GenerateOptions{1});
  const auto all = generate(lm, prompts, seeds, p, GenerateOptions{3});
  const auto again = generate(lm, prompts, seeds, p, GenerateOptions{2});
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(one[i].ids, all[i].ids) << i;
    EXPECT_EQ(one[i].ids, again[i].ids) << i;
    EXPECT_EQ(one[i].text, all[i].text) << i;
  }
  // Another seed gives another text (16 tokens from ~30 candidates each: a
  // collision is ~impossible).
  const auto other = generate(lm, prompts, {seeds[1], seeds[2], seeds[0]}, p, GenerateOptions{3});
  EXPECT_NE(other[0].ids, one[0].ids);
  EXPECT_NE(sample_seed(0, "a", 0, 1), sample_seed(0, "a", 0, 0));
  EXPECT_NE(sample_seed(0, "b", 0, 0), sample_seed(0, "a", 0, 0));
  EXPECT_NE(sample_seed(1, "a", 0, 0), sample_seed(0, "a", 0, 0));
}

TEST(SampleFilter, StopStringsEndTheText) {
  testutil::OneThread one_thread;
  const CausalLM lm = testutil::tiny_lm();
  SamplingParams p;
  p.max_new_tokens = 40;
  const std::vector<std::vector<int32_t>> prompts(8, lm.tokenizer().encode("the"));
  std::vector<uint64_t> seeds;
  for (uint64_t i = 0; i < 8; ++i) seeds.push_back(i);
  const auto free = generate(lm, prompts, seeds, p);
  // Stop at a piece that some free-running text contains.
  std::string stop;
  for (const auto& g : free) {
    if (g.text.size() > 4) stop = g.text.substr(2, 2);
  }
  ASSERT_FALSE(stop.empty());
  p.stop = {stop};
  const auto cut = generate(lm, prompts, seeds, p);
  int64_t stopped = 0;
  for (size_t i = 0; i < cut.size(); ++i) {
    EXPECT_EQ(cut[i].text.find(stop), std::string::npos) << cut[i].text;
    const size_t at = free[i].text.find(stop);
    if (at != std::string::npos) {
      EXPECT_EQ(cut[i].text, free[i].text.substr(0, at));
      EXPECT_EQ(cut[i].finish, "stop");
      ++stopped;
    }
  }
  EXPECT_GE(stopped, 1);
}

TEST(SampleCausalLM, CacheEqualsFullRecomputeAndTheRewardModelDecoder) {
  testutil::OneThread one_thread;
  const ModelConfig c = testutil::tiny_lm_config(/*qkv_bias=*/true);
  RewardModel decoder = polar::testutil::tiny_model(c, 9);
  const torch::Tensor head = testutil::tiny_lm_head(c, 10);
  const CausalLM lm(decoder, head, Tokenizer::load(testing::tiny_tokenizer_dir()));
  auto gen = at::detail::createCPUGenerator(1);
  const int64_t T = 13;
  const auto tokens = torch::randint(3, c.vocab_size, {2, T}, gen);
  const auto positions = torch::arange(T).repeat({2, 1});
  // Full sequence at once.
  KvCache full = lm.new_cache(2, T);
  const auto want = lm.step(tokens, positions, torch::ones({2, T}, torch::kBool), full);
  // Prefill 5, then one token at a time.
  KvCache cache = lm.new_cache(2, T);
  torch::Tensor got = lm.step(tokens.narrow(1, 0, 5), positions.narrow(1, 0, 5),
                              torch::ones({2, 5}, torch::kBool), cache);
  for (int64_t t = 5; t < T; ++t) {
    got = lm.step(tokens.narrow(1, t, 1), positions.narrow(1, t, 1),
                  torch::ones({2, t + 1}, torch::kBool), cache);
  }
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-4);
  // The reward model's decoder (backbone, then model.norm) under the same LM
  // head.
  torch::NoGradGuard no_grad;
  const auto hidden =
      decoder->backbone(tokens, positions, torch::ones({2, T}, torch::kInt64)).select(1, T - 1);
  const auto norm = decoder->named_parameters()["model.norm.weight"];
  const auto h = hidden * torch::rsqrt(hidden.square().mean(-1, true) + c.rms_eps) * norm;
  EXPECT_LT((torch::linear(h, head) - want).abs().max().item<double>(), 1e-4);
  EXPECT_GT(want.std().item<double>(),
            0.3);  // logits are spread, the comparison means something
}

TEST(SampleCausalLM, LeftPaddedBatchEqualsOneAtATime) {
  testutil::OneThread one_thread;
  const CausalLM lm = testutil::tiny_lm(6, /*qkv_bias=*/true);
  const std::vector<std::vector<int32_t>> prompts = {
      lm.tokenizer().encode("a"), lm.tokenizer().encode("the capital of China is Beijing, not"),
      lm.tokenizer().encode("reward model")};
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.max_new_tokens = 20;
  const std::vector<uint64_t> seeds(3, 0);
  const auto one = generate(lm, prompts, seeds, greedy, GenerateOptions{1});
  const auto batched = generate(lm, prompts, seeds, greedy, GenerateOptions{3});
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(one[i].ids, batched[i].ids) << i;
    EXPECT_EQ(one[i].finish, batched[i].finish) << i;
  }
  EXPECT_NE(one[0].ids, one[1].ids);
}

TEST(SampleFilter, RejectsBadParameters) {
  SamplingParams p;
  p.top_p = 0;
  EXPECT_THROW(p.validate("x"), Error);
  p = SamplingParams{};
  p.temperature = -1;
  EXPECT_THROW(p.validate("x"), Error);
  p = SamplingParams{};
  p.max_new_tokens = 0;
  EXPECT_THROW(p.validate("x"), Error);
  p = SamplingParams{};
  p.stop = {""};
  EXPECT_THROW(p.validate("x"), Error);
}

}  // namespace
}  // namespace polar::sample
