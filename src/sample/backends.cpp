// The two policy backends: a built-in causal LM and an OpenAI-compatible
// server.
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "polar/common/error.h"
#include "polar/sample/causal_lm.h"
#include "polar/sample/openai_client.h"
#include "polar/sample/sampler.h"

namespace polar::sample {

namespace {

class BuiltinBackend : public PolicyBackend {
 public:
  explicit BuiltinBackend(const PolicySpec& spec) : spec_(spec), lm_(load(spec)) {}

  void run(const std::vector<SampleJob>& jobs, const std::vector<Prompt>& prompts,
           const JobDone& done) override {
    GenerateOptions options;
    options.batch_size = spec_.builtin.batch_size;
    const size_t step = static_cast<size_t>(spec_.builtin.batch_size);
    for (size_t start = 0; start < jobs.size(); start += step) {
      const size_t end = std::min(jobs.size(), start + step);
      std::vector<std::vector<int32_t>> ids;
      std::vector<uint64_t> seeds;
      for (size_t i = start; i < end; ++i) {
        ids.push_back(lm_.tokenizer().encode(prompts[jobs[i].prompt_index].text));
        seeds.push_back(jobs[i].seed);
      }
      const auto out = generate(lm_, ids, seeds, spec_.sampling, options);
      for (size_t i = start; i < end; ++i) {
        const Generation& g = out[i - start];
        done(jobs[i], g.text, g.finish, static_cast<int64_t>(g.ids.size()));
      }
    }
  }

 private:
  static CausalLM load(const PolicySpec& spec) {
    CausalLMOptions o;
    o.tokenizer_dir = spec.builtin.tokenizer;
    o.device = spec.builtin.device;
    o.dtype = spec.builtin.dtype;
    try {
      return CausalLM::load(spec.builtin.model_dir, o);
    } catch (const std::exception& e) {  // c10::Error for a bad device name,
                                         // polar::Error otherwise
      throw Error("policy \"" + spec.name + "\": cannot import " + spec.builtin.model_dir + ": " +
                  e.what());
    }
  }

  PolicySpec spec_;
  CausalLM lm_;
};

class ServerBackend : public PolicyBackend {
 public:
  explicit ServerBackend(const PolicySpec& spec) : spec_(spec), client_(spec.name, spec.server) {
    client_.check();
  }

  void run(const std::vector<SampleJob>& jobs, const std::vector<Prompt>& prompts,
           const JobDone& done) override {
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    std::string first_error;
    auto worker = [&] {
      while (!failed) {
        const size_t i = next++;
        if (i >= jobs.size()) return;
        try {
          const Completion c =
              client_.complete(prompts[jobs[i].prompt_index].text, spec_.sampling, jobs[i].seed);
          done(jobs[i], c.text, c.finish, c.tokens);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (first_error.empty()) first_error = e.what();
          failed = true;
        }
      }
    };
    const size_t n = std::min<size_t>(jobs.size(), static_cast<size_t>(spec_.server.concurrency));
    std::vector<std::thread> threads;
    for (size_t t = 0; t < n; ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    if (failed) throw Error(first_error);
  }

 private:
  PolicySpec spec_;
  OpenAIClient client_;
};

}  // namespace

std::unique_ptr<PolicyBackend> open_backend(const PolicySpec& policy) {
  if (policy.is_server) return std::make_unique<ServerBackend>(policy);
  return std::make_unique<BuiltinBackend>(policy);
}

}  // namespace polar::sample
