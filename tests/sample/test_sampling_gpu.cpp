// The built-in sampler on CUDA: a tiny model imported onto the GPU generates the greedy ids of the
// CPU run (fp32) with first-step logits within 1e-4, and runs in bf16. SKIPPED without a GPU.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "polar/sample/generate.h"
#include "sample_test_util.h"

namespace polar::sample {
namespace {

TEST(SampleGpu, CudaGenerationEqualsCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  testing::TempDir tmp;
  testutil::write_tiny_hf_lm(tmp / "lm", 31);
  const CausalLM cpu = CausalLM::load(tmp / "lm", CausalLMOptions{});
  CausalLMOptions on_gpu;
  on_gpu.device = "cuda";
  const CausalLM gpu = CausalLM::load(tmp / "lm", on_gpu);
  ASSERT_TRUE(gpu.device().is_cuda());
  const std::vector<std::vector<int32_t>> prompts = {
      cpu.tokenizer().encode("the capital of China is"), cpu.tokenizer().encode("a"),
      cpu.tokenizer().encode("policy says good answer")};
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.max_new_tokens = 24;
  const std::vector<uint64_t> seeds = {1, 2, 3};
  const auto want = generate(cpu, prompts, seeds, greedy, GenerateOptions{3});
  const auto got = generate(gpu, prompts, seeds, greedy, GenerateOptions{3});
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(got[i].ids, want[i].ids) << i;
  EXPECT_GE(want[0].ids.size(), 4u);

  std::vector<int64_t> ids{cpu.tokenizer().special().bos};
  for (int32_t id : prompts[0]) ids.push_back(id);
  const int64_t T = static_cast<int64_t>(ids.size());
  KvCache c1 = cpu.new_cache(1, T), c2 = gpu.new_cache(1, T);
  const auto x = torch::tensor(ids).view({1, T});
  const auto pos = torch::arange(T).view({1, T});
  const auto mask = torch::ones({1, T}, torch::kBool);
  const auto l1 = cpu.step(x, pos, mask, c1), l2 = gpu.step(x, pos, mask, c2).cpu();
  EXPECT_LT((l1 - l2).abs().max().item<double>(), 1e-4);

  on_gpu.dtype = "bf16";
  const CausalLM half = CausalLM::load(tmp / "lm", on_gpu);
  SamplingParams p;
  p.max_new_tokens = 16;
  const auto sampled = generate(half, prompts, seeds, p, GenerateOptions{3});
  ASSERT_EQ(sampled.size(), 3u);
  for (const auto& g : sampled) EXPECT_LE(g.ids.size(), 16u);
}

}  // namespace
}  // namespace polar::sample
