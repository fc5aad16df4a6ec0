// Dynamic batching for the reward server: request threads submit groups; one worker thread owns
// the model and runs it on batches packed from the queue. A batch is formed when the queued
// sequences reach the token budget or when the oldest request has waited max_wait, whichever
// comes first; whole requests are taken in arrival order up to the budget (a request larger than
// the budget runs alone, split into micro-batches by reward_groups).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "polar/checkpoint/checkpoint.h"
#include "polar/eval/eval.h"

namespace polar::serve {

struct BatcherOptions {
  std::chrono::microseconds max_wait{2000};
  int64_t batch_tokens = 16384;  // tokens per batch taken from the queue
  ScoreOptions score;            // row_tokens, precision (micro_batch_tokens = batch_tokens)
};

struct BatcherStats {
  int64_t batches = 0, sequences = 0, tokens = 0;
  int64_t queued_sequences = 0;  // waiting now
};

class DynamicBatcher {
 public:
  DynamicBatcher(LoadedModel& model, BatcherOptions options);
  ~DynamicBatcher();
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // Rewards of every sequence of `groups` in reward_groups() order. A failed forward pass
  // reaches the future as its exception. Throws polar::Error after stop().
  std::future<std::vector<float>> submit(std::vector<EncodedGroup> groups);
  // Runs what is queued, then joins the worker; later submits are refused.
  void stop();
  BatcherStats stats() const;

 private:
  struct Job {
    std::vector<EncodedGroup> groups;
    int64_t sequences = 0, tokens = 0;
    std::chrono::steady_clock::time_point arrived;
    std::promise<std::vector<float>> done;
  };
  void run();
  std::vector<Job> next_batch();  // blocks; empty when stopping with nothing queued
  void score(std::vector<Job>& batch);

  LoadedModel& model_;
  BatcherOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  int64_t queued_tokens_ = 0;
  BatcherStats stats_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace polar::serve
