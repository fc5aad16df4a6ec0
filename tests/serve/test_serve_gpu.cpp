// `polar serve` on CUDA: bf16 by default, and fp32 on request equal to `polar score` on the GPU.
// SKIPPED without a CUDA device.
#include <gtest/gtest.h>
#include <signal.h>
#include <torch/cuda.h>

#include <cmath>

#include "serve/serve_test_util.h"

using nlohmann::json;
using namespace polar::testing;

TEST(ServeGpu, CudaRewardsMatchPolarScoreInFp32AndBf16) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  TempDir tmp;
  const std::string ckpt = write_serve_checkpoint(tmp);
  std::vector<ScoreInput> inputs{{"what is 12 and 7", "the answer is 19", "answer 19"},
                                 {"how many trees", "many trees", "a sea of trees and sky"},
                                 {"write about the sea", "the sea is a sky", "yes"}};
  std::vector<std::string> texts;
  for (const auto& in : inputs) texts.push_back(client_format(in));
  // (precision, tolerance): fp32 differs from the offline run only by batch composition; bf16
  // keeps 8 mantissa bits, so rewards of order 1 agree to about 2^-8 relative.
  for (auto [precision, tol] : {std::pair<std::string, double>{"fp32", 1e-4}, {"bf16", 3e-2}}) {
    auto expected = polar_score(ckpt, inputs, tmp, {"--device", "cuda", "--precision", precision});
    ServerProcess server(ckpt, {"--precision", precision}, tmp, "cuda");
    auto res = server.client()->Post("/pooling", json{{"input", texts}}.dump(), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    json body = json::parse(res->body);
    for (size_t i = 0; i < texts.size(); ++i) {
      EXPECT_NEAR(body["data"][i]["data"].back()[0].get<double>(), expected[i],
                  tol * (1 + std::abs(expected[i])))
          << precision << " sequence " << i;
    }
    ::kill(server.process().pid(), SIGTERM);
    EXPECT_EQ(server.process().wait(std::chrono::seconds(60)), 0) << server.process().output();
  }
}
