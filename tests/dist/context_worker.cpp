// Worker side of the Context tests (test_context.cpp). The tests start this same executable
// under polar-run with POLAR_DIST_TEST_SCENARIO set; then, before GoogleTest starts, the process
// runs that scenario as one rank, prints "scenario NAME ok" or what went wrong, and exits.
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "polar/common/error.h"
#include "polar/dist/dist.h"

namespace {

using polar::dist::Context;
using polar::dist::DistEnv;
using polar::dist::DistOptions;

struct ScenarioFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void expect(bool ok, const std::string& what) {
  if (!ok) throw ScenarioFailure(what);
}

// Three layers used every step and one ("extra") that rank 1 skips in the unused-parameter step.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    a = register_module("a", torch::nn::Linear(8, 16));
    b = register_module("b", torch::nn::Linear(16, 16));
    c = register_module("c", torch::nn::Linear(16, 1));
    extra = register_module("extra", torch::nn::Linear(8, 1));
    scale = register_buffer("scale", torch::ones({3}));
  }
  torch::Tensor forward(const torch::Tensor& x, bool use_extra) {
    auto y = c(torch::tanh(b(torch::tanh(a(x)))));  // (N, 1)
    if (use_extra) y = y + extra(x);
    return y.pow(2).mean();
  }
  torch::nn::Linear a{nullptr}, b{nullptr}, c{nullptr}, extra{nullptr};
  torch::Tensor scale;
};
TORCH_MODULE(Net);

Net make_net(uint64_t seed) {
  torch::manual_seed(seed);
  return Net();
}

torch::Tensor batch(int rank, int micro) {
  torch::manual_seed(1000 + 10 * rank + micro);
  return torch::randn({5, 8});
}

std::vector<torch::Tensor> grads_of(Net& net) {
  std::vector<torch::Tensor> out;
  for (auto& p : net->parameters())
    out.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return out;
}

void clear_grads(Net& net) {
  for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
}

// The gradients that rank `rank` computes locally over `micros` micro-steps, without a Context.
std::vector<torch::Tensor> local_grads(int rank, int micros, bool use_extra) {
  Net ref = make_net(100);  // what broadcast_module gives every rank
  for (int m = 0; m < micros; ++m) ref->forward(batch(rank, m), use_extra).backward();
  return grads_of(ref);
}

double max_diff(const std::vector<torch::Tensor>& x, const std::vector<torch::Tensor>& y) {
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i)
    worst = std::max(worst, (x[i] - y[i]).abs().max().item<double>());
  return worst;
}

void collectives_scenario() {
  const DistEnv env = DistEnv::from_environment();
  expect(env.world_size == 2, "expected 2 ranks");
  DistOptions options;
  options.timeout = std::chrono::seconds(30);
  options.bucket_bytes = 300;  // several buckets even for this small net
  auto ctx = Context::create(env, torch::kCPU, options);
  const int rank = ctx->rank();

  std::vector<double> values{rank + 1.0, 0.5, rank * 10.0};
  ctx->all_reduce_sum(values);
  expect(values == std::vector<double>({3.0, 1.0, 10.0}), "all_reduce_sum gave the wrong sums");

  // Rank 1 starts from different weights and buffer; broadcast_module makes it rank 0's.
  Net net = make_net(100 + rank);
  net->scale.fill_(5.0 + rank);
  ctx->broadcast_module(*net);
  Net rank0 = make_net(100);
  for (size_t i = 0; i < net->parameters().size(); ++i) {
    expect(torch::equal(net->parameters()[i], rank0->parameters()[i]),
           "parameter differs from rank 0's after broadcast");
  }
  expect(net->scale.eq(5.0).all().item<bool>(), "buffer differs from rank 0's after broadcast");

  ctx->attach_gradients(net->parameters());
  // Step 1: three micro-steps, the first two accumulate locally without any communication; the
  // last one's buckets are all-reduced from autograd hooks while backward runs.
  for (int m = 0; m < 3; ++m) {
    const bool sync = m == 2;
    ctx->begin_micro_step(sync);
    const int64_t before = ctx->collective_count();
    net->forward(batch(rank, m), true).backward();
    const int64_t launched = ctx->collective_count() - before;
    if (!sync) expect(launched == 0, "an accumulation micro-step communicated");
    if (sync)
      expect(launched >= 3, "expected several gradient buckets launched during backward, got " +
                                std::to_string(launched));
  }
  const int64_t before_finish = ctx->collective_count();
  ctx->finish_step();
  expect(ctx->collective_count() == before_finish,
         "finish_step launched buckets that backward should have");
  auto sum = local_grads(0, 3, true);
  auto other = local_grads(1, 3, true);
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = sum[i] + other[i];
  const double diff = max_diff(grads_of(net), sum);
  expect(diff <= 1e-6, "summed gradients differ from the sum of both ranks' gradients by " +
                           std::to_string(diff));
  expect(ctx->last_total_comm_seconds() > 0 && ctx->last_exposed_comm_seconds() >= 0,
         "no communication time recorded");

  // Step 2: rank 1 does not use `extra`; it still joins that bucket (with zeros) and ends with
  // rank 0's gradient for it.
  clear_grads(net);
  ctx->begin_micro_step(true);
  net->forward(batch(rank, 7), rank == 0).backward();
  ctx->finish_step();
  {
    Net r0 = make_net(100), r1 = make_net(100);
    r0->forward(batch(0, 7), true).backward();
    r1->forward(batch(1, 7), false).backward();
    auto g0 = grads_of(r0), g1 = grads_of(r1);
    for (size_t i = 0; i < g0.size(); ++i) sum[i] = g0[i] + g1[i];
  }
  expect(max_diff(grads_of(net), sum) <= 1e-6,
         "unused-parameter step: gradients are not the sum over ranks");
  for (auto& p : net->parameters())
    expect(p.grad().defined(), "a gradient is undefined after finish_step");

  // Step 3: a rank may have no micro-step at all; finish_step alone still takes part.
  clear_grads(net);
  if (rank == 0) {
    ctx->begin_micro_step(true);
    net->forward(batch(0, 9), true).backward();
  }
  ctx->finish_step();
  {
    Net r0 = make_net(100);
    r0->forward(batch(0, 9), true).backward();
    expect(max_diff(grads_of(net), grads_of(r0)) <= 1e-6,
           "a rank without micro-steps changed the sum");
  }
  ctx->barrier();
}

void timeout_scenario() {
  const DistEnv env = DistEnv::from_environment();
  DistOptions options;
  options.timeout = std::chrono::seconds(2);
  auto ctx = Context::create(env, torch::kCPU, options);
  std::vector<double> one{1.0};
  ctx->all_reduce_sum(one);
  if (ctx->rank() == 1) {
    // Stuck: never joins the next collective, and outlives rank 0's timeout.
    std::this_thread::sleep_for(std::chrono::seconds(5));
    return;
  }
  const auto started = std::chrono::steady_clock::now();
  try {
    ctx->all_reduce_sum(one);
  } catch (const polar::Error& e) {
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const std::string message = e.what();
    std::fprintf(stderr, "error after %.1f s: %s\n", waited, message.c_str());
    expect(waited >= 1.5 && waited < 6, "the timeout did not fire after about 2 s");
    expect(message.find("all_reduce_sum") != std::string::npos,
           "the error does not name the collective");
    expect(message.find("rank 0 of 2") != std::string::npos, "the error does not name this rank");
    expect(message.find("rank 1 (last reached #1") != std::string::npos,
           "the error does not name the lagging rank");
    return;
  }
  expect(false, "all_reduce_sum with a stuck peer returned");
}

// Context::create on its own (no polar-run): the missing-peer and wrong-port cases.
void rendezvous_scenario() {
  DistOptions options;
  options.timeout = std::chrono::seconds(2);
  try {
    Context::create(DistEnv::from_environment(), torch::kCPU, options);
  } catch (const polar::Error& e) {
    std::fprintf(stderr, "rendezvous error: %s\n", e.what());
    return;
  }
  expect(false, "Context::create succeeded without a peer");
}

const bool kIsWorker = [] {
  const char* scenario = std::getenv("POLAR_DIST_TEST_SCENARIO");
  if (scenario == nullptr) return false;
  const std::string name = scenario;
  int code = 0;
  try {
    if (name == "collectives") {
      collectives_scenario();
    } else if (name == "timeout") {
      timeout_scenario();
    } else if (name == "rendezvous") {
      rendezvous_scenario();
    } else {
      throw ScenarioFailure("unknown scenario");
    }
    std::fprintf(stderr, "scenario %s ok\n", name.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scenario %s FAILED: %s\n", name.c_str(), e.what());
    code = 1;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);  // before GoogleTest; skip static destructors of a half-initialised program
}();

}  // namespace
