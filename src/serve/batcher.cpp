// The batching worker: the only thread that runs the model.
#include "polar/serve/batcher.h"

#include <spdlog/spdlog.h>

#include "polar/common/error.h"

namespace polar::serve {

namespace {

int64_t group_tokens(const EncodedGroup& g) {
  int64_t n = 0;
  for (const auto& c : g.candidates) n += static_cast<int64_t>(g.prefix.size() + c.size());
  return n;
}

}  // namespace

DynamicBatcher::DynamicBatcher(LoadedModel& model, BatcherOptions options)
    : model_(model), options_(std::move(options)) {
  POLAR_CHECK(options_.batch_tokens > 0, "batch tokens must be positive, got ",
              options_.batch_tokens);
  options_.score.micro_batch_tokens = options_.batch_tokens;
  worker_ = std::thread([this] { run(); });
}

DynamicBatcher::~DynamicBatcher() { stop(); }

std::future<std::vector<float>> DynamicBatcher::submit(std::vector<EncodedGroup> groups) {
  Job job;
  for (const auto& g : groups) {
    job.sequences += static_cast<int64_t>(g.candidates.size());
    job.tokens += group_tokens(g);
  }
  job.groups = std::move(groups);
  job.arrived = std::chrono::steady_clock::now();
  auto future = job.done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    POLAR_CHECK(!stopping_, "the server is shutting down");
    queued_tokens_ += job.tokens;
    stats_.queued_sequences += job.sequences;
    queue_.push_back(std::move(job));
  }
  cv_.notify_all();
  return future;
}

void DynamicBatcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

BatcherStats DynamicBatcher::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::vector<DynamicBatcher::Job> DynamicBatcher::next_batch() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
  if (queue_.empty()) return {};
  // Wait for more work until the budget is full or the oldest request has waited long enough.
  const auto deadline = queue_.front().arrived + options_.max_wait;
  cv_.wait_until(lock, deadline,
                 [&] { return stopping_ || queued_tokens_ >= options_.batch_tokens; });
  std::vector<Job> batch;
  int64_t tokens = 0;
  while (!queue_.empty() &&
         (batch.empty() || tokens + queue_.front().tokens <= options_.batch_tokens)) {
    tokens += queue_.front().tokens;
    queued_tokens_ -= queue_.front().tokens;
    stats_.queued_sequences -= queue_.front().sequences;
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  return batch;
}

void DynamicBatcher::score(std::vector<Job>& batch) {
  std::vector<EncodedGroup> groups;
  int64_t sequences = 0, tokens = 0;
  for (auto& job : batch) {
    for (auto& g : job.groups) groups.push_back(std::move(g));
    sequences += job.sequences;
    tokens += job.tokens;
  }
  std::vector<float> rewards;
  std::exception_ptr failure;
  try {
    rewards = reward_groups(model_, groups, options_.score);
  } catch (...) {
    spdlog::error("serve: a batch of {} sequences failed", sequences);
    failure = std::current_exception();
  }
  {  // counted before any request is answered, so a client never sees stale counters
    std::lock_guard<std::mutex> lock(mu_);
    stats_.batches++;
    stats_.sequences += sequences;
    stats_.tokens += tokens;
  }
  size_t next = 0;
  for (auto& job : batch) {
    if (failure) {
      job.done.set_exception(failure);
      continue;
    }
    const auto n = static_cast<size_t>(job.sequences);
    job.done.set_value(std::vector<float>(rewards.begin() + static_cast<std::ptrdiff_t>(next),
                                          rewards.begin() + static_cast<std::ptrdiff_t>(next + n)));
    next += n;
  }
}

void DynamicBatcher::run() {
  for (;;) {
    std::vector<Job> batch = next_batch();
    if (batch.empty()) return;
    score(batch);
  }
}

}  // namespace polar::serve
