// The batching worker: the only thread that runs the model.
#include "polar/serve/batcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "polar/common/error.h"

namespace polar::serve {

namespace {

int64_t group_tokens(const EncodedGroup& g) {
  int64_t n = 0;
  for (const auto& c : g.candidates) n += static_cast<int64_t>(g.prefix.size() + c.size());
  return n;
}

}  // namespace

std::vector<size_t> pick_batch(const std::vector<BatchChunk>& queue, int64_t budget,
                               bool alone_fills) {
  // Queue indices per request, requests in order of their first chunk (oldest first).
  std::vector<const void*> order;
  std::vector<std::vector<size_t>> by_request;
  for (size_t i = 0; i < queue.size(); ++i) {
    size_t k = 0;
    while (k < order.size() && order[k] != queue[i].request) ++k;
    if (k == order.size()) {
      order.push_back(queue[i].request);
      by_request.emplace_back();
    }
    by_request[k].push_back(i);
  }
  // With other requests waiting, every request gets one chunk (fair per request, whatever its
  // size): a request's further chunks would lengthen the batch that everyone waits for. A request
  // alone fills the budget, if allowed.
  const size_t rounds = by_request.size() == 1 && alone_fills ? queue.size() : 1;
  std::vector<size_t> picked;
  int64_t tokens = 0;
  for (size_t round = 0; round < rounds; ++round) {
    for (const auto& chunks : by_request) {
      if (round >= chunks.size()) continue;
      const int64_t t = queue[chunks[round]].tokens;
      if (!picked.empty() && tokens + t > budget) return picked;
      tokens += t;
      picked.push_back(chunks[round]);
    }
  }
  return picked;
}

DynamicBatcher::DynamicBatcher(LoadedModel& model, BatcherOptions options)
    : model_(model), options_(std::move(options)) {
  POLAR_CHECK(options_.batch_tokens > 0, "batch tokens must be positive, got ",
              options_.batch_tokens);
  options_.score.micro_batch_tokens = options_.batch_tokens;
  worker_ = std::thread([this] { run(); });
}

DynamicBatcher::~DynamicBatcher() { stop(); }

std::future<std::vector<float>> DynamicBatcher::submit(std::vector<EncodedGroup> groups,
                                                       std::shared_ptr<std::atomic<bool>> cancel) {
  auto request = std::make_shared<Request>();
  request->cancel = std::move(cancel);
  auto future = request->done.get_future();
  // A request of up to a quarter of the budget stays whole; a larger one is cut into chunks.
  std::vector<int64_t> tokens(groups.size());
  int64_t total = 0;
  for (size_t i = 0; i < groups.size(); ++i) total += tokens[i] = group_tokens(groups[i]);
  int64_t chunk_tokens = options_.chunk_tokens > 0
                             ? options_.chunk_tokens
                             : std::max<int64_t>(1, options_.batch_tokens / 16);
  if (total <= options_.batch_tokens / 4) chunk_tokens = total;
  const auto now = std::chrono::steady_clock::now();
  std::vector<Job> jobs;
  size_t sequences = 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    EncodedGroup& g = groups[i];
    const int64_t t = tokens[i];
    if (jobs.empty() || (jobs.back().tokens + t > chunk_tokens && !jobs.back().groups.empty())) {
      jobs.emplace_back();
      jobs.back().request = request;
      jobs.back().offset = sequences;
      jobs.back().arrived = now;
    }
    Job& job = jobs.back();
    job.sequences += static_cast<int64_t>(g.candidates.size());
    job.tokens += t;
    sequences += g.candidates.size();
    job.groups.push_back(std::move(g));
  }
  request->rewards.resize(sequences);
  request->chunks_left = jobs.size();
  if (jobs.empty()) {
    request->done.set_value({});
    return future;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    POLAR_CHECK(!stopping_, "the server is shutting down");
    for (auto& job : jobs) {
      queued_tokens_ += job.tokens;
      stats_.queued_sequences += job.sequences;
      queue_.push_back(std::move(job));
    }
  }
  cv_.notify_all();
  return future;
}

void DynamicBatcher::fail(Request& request, std::exception_ptr error) {
  if (request.finished) return;
  request.finished = true;
  request.done.set_exception(error);
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
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return {};
    // Wait for more work until the budget is full or the oldest request has waited long enough.
    const auto deadline = queue_.front().arrived + options_.max_wait;
    cv_.wait_until(lock, deadline,
                   [&] { return stopping_ || queued_tokens_ >= options_.batch_tokens; });
    // Chunks of requests whose client went away are dropped unscored.
    std::deque<Job> live;
    for (auto& job : queue_) {
      if (job.request->cancel && job.request->cancel->load()) {
        queued_tokens_ -= job.tokens;
        stats_.queued_sequences -= job.sequences;
        stats_.cancelled_sequences += job.sequences;
        fail(*job.request, std::make_exception_ptr(Error("the request was cancelled")));
      } else {
        live.push_back(std::move(job));
      }
    }
    queue_.swap(live);
    if (!queue_.empty()) break;
  }
  std::vector<BatchChunk> chunks;
  chunks.reserve(queue_.size());
  for (const Job& job : queue_) chunks.push_back({job.request.get(), job.tokens});
  // Clients answered by a shared batch take a moment to send their next request: until then a
  // request that is alone does not fill a long batch that they would wait out.
  const auto now = std::chrono::steady_clock::now();
  const std::vector<size_t> picked =
      pick_batch(chunks, options_.batch_tokens, now >= shared_until_);
  std::vector<bool> taken(queue_.size(), false);
  for (size_t i : picked) taken[i] = true;
  std::vector<Job> batch;
  std::deque<Job> rest;
  for (size_t i : picked) batch.push_back(std::move(queue_[i]));
  for (size_t i = 0; i < queue_.size(); ++i) {
    if (!taken[i]) rest.push_back(std::move(queue_[i]));
  }
  queue_.swap(rest);
  for (const Job& job : batch) {
    queued_tokens_ -= job.tokens;
    stats_.queued_sequences -= job.sequences;
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
    Request& request = *job.request;
    const auto n = static_cast<size_t>(job.sequences);
    if (failure) {
      fail(request, failure);
    } else if (!request.finished) {
      std::copy(rewards.begin() + static_cast<std::ptrdiff_t>(next),
                rewards.begin() + static_cast<std::ptrdiff_t>(next + n),
                request.rewards.begin() + static_cast<std::ptrdiff_t>(job.offset));
    }
    next += n;
    if (--request.chunks_left == 0 && !request.finished) {
      request.finished = true;
      request.done.set_value(std::move(request.rewards));
    }
  }
}

void DynamicBatcher::run() {
  auto last_trim = std::chrono::steady_clock::now();
  for (;;) {
    std::vector<Job> batch = next_batch();
    if (batch.empty()) return;
    bool shared = false;
    for (const Job& job : batch) shared = shared || job.request != batch.front().request;
    score(batch);
    // Measured from the end of the batch: its clients send their next requests from now on.
    if (shared) shared_until_ = std::chrono::steady_clock::now() + kSharedWindow;
    // glibc keeps freed memory in its arenas (and raises its mmap threshold after large frees),
    // so a server that runs for hours would hold its peak heap; hand the free pages back.
    const auto now = std::chrono::steady_clock::now();
    if (options_.trim_interval.count() > 0 && now - last_trim >= options_.trim_interval) {
#ifdef __GLIBC__
      malloc_trim(0);
#endif
      last_trim = now;
    }
  }
}

}  // namespace polar::serve
