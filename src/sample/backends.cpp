// The two policy backends: a built-in causal LM and an OpenAI-compatible
// server.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "polar/common/error.h"
#include "polar/sample/causal_lm.h"
#include "polar/sample/openai_client.h"
#include "polar/sample/sampler.h"

namespace polar::sample {

namespace {

// The end of the last UTF-8 character at or before `pos`.
size_t utf8_boundary(const std::string& s, size_t pos) {
  while (pos > 0 && pos < s.size() && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) --pos;
  return pos;
}

class BuiltinBackend : public PolicyBackend {
 public:
  explicit BuiltinBackend(const PolicySpec& spec) : spec_(spec), lm_(load(spec)) {}

  void run(const std::vector<SampleJob>& jobs, const std::vector<Prompt>& prompts,
           const JobDone& done) override {
    // A job's new-token budget: max_new_tokens, or what the model's context leaves after its
    // prompt (at least a quarter of the context; the prompt keeps its last tokens). Jobs of one
    // budget share batches, so a response does not depend on the batch it ran in.
    const int64_t context = lm_.config().max_position;
    const int64_t wanted = spec_.sampling.max_new_tokens;
    const int64_t floor = std::max<int64_t>(1, std::min(wanted, context / 4));
    const bool bos = lm_.tokenizer().special().bos >= 0;
    struct Item {
      size_t job;
      std::vector<int32_t> ids;
      int64_t budget;
    };
    std::vector<Item> items;
    for (size_t i = 0; i < jobs.size(); ++i) {
      std::vector<int32_t> ids = encode(prompts[jobs[i].prompt_index].text);
      const int64_t room = context - static_cast<int64_t>(ids.size()) - (bos ? 1 : 0);
      items.push_back({i, std::move(ids), std::min(wanted, std::max(room, floor))});
    }
    std::stable_sort(items.begin(), items.end(),
                     [](const Item& a, const Item& b) { return a.budget > b.budget; });
    GenerateOptions options;
    options.batch_size = spec_.builtin.batch_size;
    const size_t step = static_cast<size_t>(spec_.builtin.batch_size);
    for (size_t start = 0; start < items.size();) {
      size_t end = start;
      while (end < items.size() && end - start < step && items[end].budget == items[start].budget)
        ++end;
      std::vector<std::vector<int32_t>> ids;
      std::vector<uint64_t> seeds;
      for (size_t i = start; i < end; ++i) {
        ids.push_back(items[i].ids);
        seeds.push_back(jobs[items[i].job].seed);
      }
      SamplingParams params = spec_.sampling;
      params.max_new_tokens = items[start].budget;
      const auto out = generate(lm_, ids, seeds, params, options);
      for (size_t i = start; i < end; ++i) {
        const Generation& g = out[i - start];
        JobResult r;
        r.text = g.text;
        r.finish = g.finish;
        r.tokens = static_cast<int64_t>(g.ids.size());
        r.prompt_cut =
            static_cast<int64_t>(items[i].ids.size()) + (bos ? 1 : 0) > context - items[i].budget;
        done(jobs[items[i].job], r);
      }
      start = end;
    }
  }

 private:
  // The prompt's tokens: the policy's own tokenizer, through its chat template for a chat
  // policy (special pieces in the template become their ids).
  std::vector<int32_t> encode(const std::string& prompt) const {
    if (spec_.builtin.chat_template.empty()) return lm_.tokenizer().encode(prompt);
    std::string text = spec_.builtin.chat_template;
    text.replace(text.find("{prompt}"), 8, prompt);
    std::vector<int32_t> ids;
    std::vector<size_t> ends;
    lm_.tokenizer().encode_split_specials(text, ids, ends);
    return ids;
  }

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
          done(jobs[i], complete(prompts[jobs[i].prompt_index].text, jobs[i].seed));
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
  // One completion; a prompt the server finds too long for its context is cut from the left
  // (its last half kept) and asked again, up to four times, then skipped.
  JobResult complete(const std::string& prompt, uint64_t seed) const {
    JobResult r;
    std::string text = prompt;
    for (int cuts = 0;; ++cuts) {
      const Completion c = client_.complete(text, spec_.sampling, seed);
      if (!c.context_exceeded) {
        r.text = c.text;
        r.finish = c.finish;
        r.tokens = c.tokens;
        return r;
      }
      if (cuts == 4 || text.size() < 2) {
        spdlog::warn(
            "policy \"{}\": a prompt of {} bytes does not fit the server's context even "
            "cut to {} bytes; skipped ({})",
            spec_.name, prompt.size(), text.size(), c.error);
        r.context_skipped = true;
        return r;
      }
      text = text.substr(utf8_boundary(text, text.size() / 2));
      r.prompt_cut = true;
    }
  }

  PolicySpec spec_;
  OpenAIClient client_;
};

}  // namespace

std::unique_ptr<PolicyBackend> open_backend(const PolicySpec& policy) {
  if (policy.is_server) return std::make_unique<ServerBackend>(policy);
  return std::make_unique<BuiltinBackend>(policy);
}

}  // namespace polar::sample
