// The dynamic batcher: requests from several threads are packed into shared forward passes, each
// request gets back exactly its own rewards (equal to scoring it alone), and stop() drains.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "polar/common/error.h"
#include "polar/serve/batcher.h"
#include "serve/serve_test_util.h"

using namespace polar;
using namespace polar::testing;

TEST(ServeBatcher, ConcurrentRequestsShareBatchesAndGetTheirOwnRewards) {
  TempDir tmp;
  LoadedModel lm = load_model(write_serve_checkpoint(tmp), torch::kCPU);
  std::vector<EncodedGroup> groups;
  for (int i = 0; i < 12; ++i) {
    auto g =
        encode_group_text(lm.tokenizer, TemplateKind::Finetune, "what is " + std::to_string(i),
                          "the sea", {"a tree " + std::to_string(i * 7), "yes"}, TemplateLimits{});
    groups.push_back(*g);
  }
  ScoreOptions o;
  const std::vector<float> alone = reward_groups(lm, groups, o);

  serve::BatcherOptions bo;
  bo.max_wait = std::chrono::milliseconds(200);  // long enough for every thread to queue
  serve::DynamicBatcher batcher(lm, bo);
  std::vector<std::future<std::vector<float>>> futures(groups.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < groups.size(); ++i) {
    threads.emplace_back([&, i] { futures[i] = batcher.submit({groups[i]}); });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < groups.size(); ++i) {
    std::vector<float> r = futures[i].get();
    ASSERT_EQ(r.size(), 2u);
    EXPECT_NEAR(r[0], alone[2 * i], 1e-5);
    EXPECT_NEAR(r[1], alone[2 * i + 1], 1e-5);
  }
  serve::BatcherStats s = batcher.stats();
  EXPECT_EQ(s.sequences, 24);
  EXPECT_LT(s.batches, 12) << "requests were not batched together";
  EXPECT_EQ(s.queued_sequences, 0);
}

TEST(ServeBatcher, TokenBudgetSplitsBatchesAndStopDrainsTheQueue) {
  TempDir tmp;
  LoadedModel lm = load_model(write_serve_checkpoint(tmp), torch::kCPU);
  auto g = *encode_group_text(lm.tokenizer, TemplateKind::Finetune, "how many trees", "many",
                              {"yes"}, TemplateLimits{});
  const int64_t tokens = static_cast<int64_t>(g.prefix.size() + g.candidates[0].size());
  serve::BatcherOptions bo;
  bo.max_wait = std::chrono::milliseconds(300);
  bo.batch_tokens = 2 * tokens;  // two requests per batch
  std::vector<std::future<std::vector<float>>> futures;
  {
    serve::DynamicBatcher batcher(lm, bo);
    for (int i = 0; i < 6; ++i) futures.push_back(batcher.submit({g}));
    batcher.stop();  // returns after the queued work ran
    EXPECT_EQ(batcher.stats().batches, 3);
    EXPECT_THROW(batcher.submit({g}), polar::Error);
  }
  for (auto& f : futures) EXPECT_EQ(f.get().size(), 1u);
}

TEST(ServeBatcher, LargeRequestAddsOneChunkWhileOthersWait) {
  int big = 0, small_a = 0, small_b = 0;
  // A large request alone fills the budget with its chunks.
  std::vector<serve::BatchChunk> q;
  for (int i = 0; i < 10; ++i) q.push_back({&big, 100});
  EXPECT_EQ(serve::pick_batch(q, 400), (std::vector<size_t>{0, 1, 2, 3}));
  // Right after a shared batch (its clients about to send again) it takes one chunk.
  EXPECT_EQ(serve::pick_batch(q, 400, false), (std::vector<size_t>{0}));
  // With small requests waiting, it adds one chunk: the batch they wait for stays short.
  q.push_back({&small_a, 30});
  q.push_back({&small_b, 20});
  EXPECT_EQ(serve::pick_batch(q, 400), (std::vector<size_t>{0, 10, 11}));
  // The budget still bounds the batch, oldest request first; the first chunk goes whatever its
  // size.
  EXPECT_EQ(serve::pick_batch(q, 140), (std::vector<size_t>{0, 10}));
  EXPECT_EQ(serve::pick_batch({{&small_a, 500}, {&big, 100}}, 120), (std::vector<size_t>{0}));
}
