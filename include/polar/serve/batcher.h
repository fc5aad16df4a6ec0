// Dynamic batching for the reward server: request threads submit groups; one worker thread owns
// the model and runs it on batches packed from the queue. A batch is formed when the queued
// sequences reach the token budget or when the oldest request has waited max_wait, whichever
// comes first. A request of more than a quarter of the budget is split into chunks of about
// chunk_tokens (whole groups) when it is submitted, so a request of any size streams through the
// batcher: a batch takes one chunk of every waiting request (oldest request first) up to the
// budget, and more chunks of a request only while it is the only one waiting. Beside others a large
// request thus adds one chunk (a sixteenth of the budget) to each batch: the batch a small request
// waits for stays short, and the large one still moves with every batch. A request whose cancel
// flag is set (its client went away) has its queued chunks dropped unscored.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "polar/checkpoint/checkpoint.h"
#include "polar/eval/eval.h"

namespace polar::serve {

struct BatcherOptions {
  std::chrono::microseconds max_wait{2000};
  int64_t batch_tokens = 16384;  // tokens per batch taken from the queue
  int64_t chunk_tokens = 0;      // tokens per chunk of a large request (0: batch_tokens / 16)
  ScoreOptions score;            // row_tokens, precision (micro_batch_tokens = batch_tokens)
  // How often the worker returns the allocator's free pages to the system (0: never).
  std::chrono::seconds trim_interval{10};
};

struct BatcherStats {
  int64_t batches = 0, sequences = 0, tokens = 0;
  int64_t queued_sequences = 0;     // waiting now
  int64_t cancelled_sequences = 0;  // dropped unscored: their client went away
};

// The batch taken from a queue of chunks (in queue order; `request` identifies a chunk's
// request): queue indices, the first chunk whatever its size, the rest within `budget` tokens.
struct BatchChunk {
  const void* request = nullptr;
  int64_t tokens = 0;
};
// `alone_fills`: a request alone in the queue may take more than one chunk.
std::vector<size_t> pick_batch(const std::vector<BatchChunk>& queue, int64_t budget,
                               bool alone_fills = true);

class DynamicBatcher {
 public:
  DynamicBatcher(LoadedModel& model, BatcherOptions options);
  ~DynamicBatcher();
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // Rewards of every sequence of `groups` in reward_groups() order. A failed forward pass
  // reaches the future as its exception. Throws polar::Error after stop().
  // `cancel`, when given, may be set at any time: the request's chunks still queued are dropped
  // and its future gets an exception.
  std::future<std::vector<float>> submit(std::vector<EncodedGroup> groups,
                                         std::shared_ptr<std::atomic<bool>> cancel = nullptr);
  // Wakes the worker, so that a newly cancelled request's chunks are dropped at once.
  void wake() { cv_.notify_all(); }
  // Runs what is queued, then joins the worker; later submits are refused.
  void stop();
  BatcherStats stats() const;

 private:
  // One request: its rewards filled chunk by chunk (by the worker only).
  struct Request {
    std::promise<std::vector<float>> done;
    std::vector<float> rewards;
    size_t chunks_left = 0;
    bool finished = false;
    std::shared_ptr<std::atomic<bool>> cancel;
  };
  struct Job {  // one chunk of a request
    std::shared_ptr<Request> request;
    size_t offset = 0;  // of its first reward in the request's
    std::vector<EncodedGroup> groups;
    int64_t sequences = 0, tokens = 0;
    std::chrono::steady_clock::time_point arrived;
  };
  static void fail(Request& request, std::exception_ptr error);
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
  // Until then a request alone takes one chunk per batch: the clients of the last shared batch
  // are about to send again.
  static constexpr std::chrono::milliseconds kSharedWindow{50};
  std::chrono::steady_clock::time_point shared_until_{};
  std::thread worker_;
};

}  // namespace polar::serve
