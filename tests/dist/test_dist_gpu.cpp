// The NCCL path on one GPU: a one-rank process group (forced; a single process normally gets the
// local no-op Context) runs the real ProcessGroupNCCL collectives, the gradient hooks on the
// autograd device thread and the stream hand-off in finish_step. SKIPPED without CUDA.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>

#include "dist/dist_test_util.h"
#include "polar/dist/dist.h"

using namespace std::chrono_literals;

TEST(DistGpu, NcclContextReducesBroadcastsAndSyncsGradients) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  polar::dist::DistEnv env;
  env.master_port = polar::testing::free_tcp_port();
  polar::dist::DistOptions options;
  options.timeout = 60s;
  options.bucket_bytes = 4096;  // several buckets
  options.force_process_group = true;
  const torch::Device cuda(torch::kCUDA, 0);
  auto ctx = polar::dist::Context::create(env, cuda, options);

  std::vector<double> values{1.5, -2.0, 1e9};
  ctx->all_reduce_sum(values);
  EXPECT_EQ(values, std::vector<double>({1.5, -2.0, 1e9}));  // a sum over one rank

  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(16, 64), torch::nn::Tanh(), torch::nn::Linear(64, 64),
                            torch::nn::Tanh(), torch::nn::Linear(64, 1));
  net->to(cuda);
  torch::manual_seed(0);
  torch::nn::Sequential ref(torch::nn::Linear(16, 64), torch::nn::Tanh(), torch::nn::Linear(64, 64),
                            torch::nn::Tanh(), torch::nn::Linear(64, 1));
  ref->to(cuda);
  ctx->broadcast_module(*net);
  for (size_t i = 0; i < net->parameters().size(); ++i)
    EXPECT_TRUE(torch::equal(net->parameters()[i], ref->parameters()[i]));

  ctx->attach_gradients(net->parameters());
  for (int m = 0; m < 2; ++m) {
    torch::manual_seed(10 + m);
    const auto x = torch::randn({32, 16}, cuda);
    ctx->begin_micro_step(m == 1);
    const int64_t before = ctx->collective_count();
    net->forward(x).pow(2).mean().backward();
    ref->forward(x).pow(2).mean().backward();
    if (m == 0)
      EXPECT_EQ(ctx->collective_count(), before) << "an accumulation micro-step communicated";
    if (m == 1)
      EXPECT_GT(ctx->collective_count(), before) << "no bucket was launched during backward";
  }
  ctx->finish_step();
  for (size_t i = 0; i < net->parameters().size(); ++i) {
    EXPECT_TRUE(torch::allclose(net->parameters()[i].grad(), ref->parameters()[i].grad(), 0, 0))
        << "parameter " << i;
  }
  ctx->barrier();
}
