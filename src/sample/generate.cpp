// Batched generation with a KV cache; see sample/generate.h.
#include "polar/sample/generate.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "polar/common/error.h"

namespace polar::sample {

using torch::Tensor;

void SamplingParams::validate(const std::string& where) const {
  POLAR_CHECK(std::isfinite(temperature) && temperature >= 0, where,
              ".temperature: expected a number >= 0, got ", temperature);
  POLAR_CHECK(std::isfinite(top_p) && top_p > 0 && top_p <= 1, where,
              ".top_p: expected a number in (0, 1], got ", top_p);
  POLAR_CHECK(top_k >= 0, where, ".top_k: expected an integer >= 0 (0 turns it off), got ", top_k);
  POLAR_CHECK(max_new_tokens >= 1, where, ".max_new_tokens: expected an integer >= 1, got ",
              max_new_tokens);
  for (const auto& s : stop)
    POLAR_CHECK(!s.empty(), where, ".stop: stop strings must not be empty");
  POLAR_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0, where,
              ".repetition_penalty: expected a number > 0 (1 turns it off), got ",
              repetition_penalty);
  POLAR_CHECK(std::isfinite(min_p) && min_p >= 0 && min_p < 1, where,
              ".min_p: expected a number in [0, 1) (0 turns it off), got ", min_p);
}

Tensor filtered_probs(const Tensor& logits_in, const SamplingParams& params) {
  POLAR_CHECK(logits_in.dim() == 1 || logits_in.dim() == 2,
              "filtered_probs: expected logits (V) or (B, V), got ", logits_in.sizes());
  const double temperature = params.temperature > 0 ? params.temperature : 1.0;
  Tensor logits = logits_in.to(torch::kFloat) / temperature;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  if (params.top_k > 0 && params.top_k < logits.size(-1)) {
    const Tensor kth =
        std::get<0>(torch::topk(logits, params.top_k)).narrow(-1, params.top_k - 1, 1);
    logits = logits.masked_fill(logits < kth, neg_inf);
  }
  if (params.top_p < 1.0) {
    // Ascending order; drop the tokens whose cumulative mass stays within 1 -
    // top_p, never the most likely.
    const auto [sorted, order] = torch::sort(logits, /*dim=*/-1, /*descending=*/false);
    const Tensor cumulative = sorted.softmax(-1).cumsum(-1);
    Tensor remove = cumulative <= (1.0 - params.top_p);
    remove.select(-1, remove.size(-1) - 1).fill_(false);
    logits = logits.masked_fill(torch::zeros_like(remove).scatter(-1, order, remove), neg_inf);
  }
  return logits.softmax(-1);
}

int64_t sample_token(const Tensor& logits, const SamplingParams& params, at::Generator& generator) {
  if (params.temperature == 0) return logits.argmax().item<int64_t>();
  return torch::multinomial(filtered_probs(logits, params), 1,
                            /*replacement=*/false, generator)
      .item<int64_t>();
}

namespace {

// One token per row of logits (B, V), row b drawn with generators[b]; the
// filter runs batched.
std::vector<int64_t> sample_rows(const Tensor& logits, const SamplingParams& params,
                                 std::vector<at::Generator>& generators) {
  const Tensor picked = params.temperature == 0 ? logits.argmax(-1) : Tensor();
  const Tensor probs = params.temperature == 0 ? Tensor() : filtered_probs(logits, params);
  std::vector<int64_t> out(logits.size(0));
  for (int64_t b = 0; b < logits.size(0); ++b) {
    out[b] =
        picked.defined()
            ? picked[b].item<int64_t>()
            : torch::multinomial(probs[b], 1, /*replacement=*/false, generators[b]).item<int64_t>();
  }
  return out;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

// The text of generated ids; ids past the tokenizer's pieces (models often pad
// their vocabulary) have no text and are skipped.
std::string decode(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  std::vector<int32_t> known;
  for (int32_t id : ids) {
    if (id < tokenizer.vocab_size()) known.push_back(id);
  }
  return tokenizer.decode(known);
}

// The stop string position in `text`, or npos.
size_t find_stop(const std::string& text, const std::vector<std::string>& stop) {
  size_t best = std::string::npos;
  for (const auto& s : stop) best = std::min(best, text.find(s));
  return best;
}

// One batch: prompts left-padded to a common length, then one token per step
// for every row.
void generate_batch(const CausalLM& lm, const std::vector<std::vector<int32_t>>& prompts,
                    const std::vector<uint64_t>& seeds, const SamplingParams& params,
                    std::vector<Generation>& out) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  int64_t width = 0;
  for (const auto& p : prompts) width = std::max<int64_t>(width, static_cast<int64_t>(p.size()));
  const int64_t pad = std::max<int32_t>(lm.tokenizer().special().pad, 0);
  const int64_t eos = lm.tokenizer().special().eos;
  Tensor tokens = torch::full({B, width}, pad, torch::kInt64);
  Tensor positions = torch::zeros({B, width}, torch::kInt64);
  Tensor key_mask = torch::zeros({B, width + params.max_new_tokens}, torch::kBool);
  std::vector<at::Generator> generators;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(prompts[b].size()), offset = width - n;
    for (int64_t t = 0; t < n; ++t) tokens[b][offset + t] = prompts[b][t];
    positions[b].narrow(0, offset, n).copy_(torch::arange(n, torch::kInt64));
    key_mask[b].narrow(0, offset, n).fill_(true);
    generators.push_back(at::detail::createCPUGenerator(seeds[b]));
  }
  KvCache cache = lm.new_cache(B, width + params.max_new_tokens);
  Tensor logits = lm.step(tokens, positions, key_mask.narrow(1, 0, width), cache).cpu();  // (B, V)
  Tensor next_pos = positions.select(1, width - 1) + 1;                                   // (B)
  std::vector<bool> done(B, false);
  for (int64_t step = 0; step < params.max_new_tokens; ++step) {
    Tensor next = torch::full({B, 1}, pad, torch::kInt64);
    int64_t active = 0;
    const std::vector<int64_t> drawn = sample_rows(logits, params, generators);
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      const int64_t id = drawn[b];
      if (id == eos) {
        done[b] = true;
        out[b].finish = "stop";
        continue;
      }
      out[b].ids.push_back(static_cast<int32_t>(id));
      if (!params.stop.empty()) {
        const std::string text = decode(lm.tokenizer(), out[b].ids);
        if (find_stop(text, params.stop) != std::string::npos) {
          done[b] = true;
          out[b].finish = "stop";
          continue;
        }
      }
      next[b][0] = id;
      key_mask[b][width + step] = true;
      ++active;
    }
    if (active == 0 || step + 1 == params.max_new_tokens) break;
    logits =
        lm.step(next, next_pos.unsqueeze(1), key_mask.narrow(1, 0, width + step + 1), cache).cpu();
    next_pos = next_pos + 1;
  }
  for (int64_t b = 0; b < B; ++b) {
    if (out[b].finish.empty()) out[b].finish = "length";
    out[b].text = decode(lm.tokenizer(), out[b].ids);
    if (const size_t cut = find_stop(out[b].text, params.stop); cut != std::string::npos)
      out[b].text.resize(cut);
  }
}

}  // namespace

uint64_t sample_seed(uint64_t base_seed, const std::string& policy, int64_t prompt_index,
                     int64_t sample) {
  uint64_t h = splitmix64(base_seed ^ fnv1a(policy));
  h = splitmix64(h ^ static_cast<uint64_t>(prompt_index));
  return splitmix64(h ^ (static_cast<uint64_t>(sample) << 1));
}

std::vector<Generation> generate(const CausalLM& lm,
                                 const std::vector<std::vector<int32_t>>& prompts,
                                 const std::vector<uint64_t>& seeds, const SamplingParams& params,
                                 const GenerateOptions& options) {
  POLAR_CHECK(prompts.size() == seeds.size(), "generate: ", prompts.size(), " prompts but ",
              seeds.size(), " seeds");
  POLAR_CHECK(options.batch_size >= 1, "generate: batch_size must be >= 1");
  params.validate("sampling");
  POLAR_CHECK(params.repetition_penalty == 1.0 && params.min_p == 0.0,
              "sampling: the built-in sampler has no repetition_penalty or min_p filter; leave "
              "them at 1 and 0 for built-in policies");
  const int64_t max_prompt = lm.config().max_position - params.max_new_tokens;
  POLAR_CHECK(max_prompt >= 1, "sampling.max_new_tokens (", params.max_new_tokens,
              ") leaves no room for a prompt within the model's max_position ",
              lm.config().max_position);
  const int32_t bos = lm.tokenizer().special().bos;
  std::vector<Generation> out(prompts.size());
  for (size_t start = 0; start < prompts.size(); start += options.batch_size) {
    const size_t end = std::min(prompts.size(), start + static_cast<size_t>(options.batch_size));
    std::vector<std::vector<int32_t>> batch;
    for (size_t i = start; i < end; ++i) {
      std::vector<int32_t> ids;
      if (options.add_bos && bos >= 0) ids.push_back(bos);
      ids.insert(ids.end(), prompts[i].begin(), prompts[i].end());
      POLAR_CHECK(!ids.empty(), "generate: prompt ", i, " is empty and the tokenizer has no bos");
      if (static_cast<int64_t>(ids.size()) > max_prompt)
        ids.erase(ids.begin(), ids.end() - max_prompt);
      batch.push_back(std::move(ids));
    }
    std::vector<Generation> part(batch.size());
    generate_batch(lm, batch, std::vector<uint64_t>(seeds.begin() + start, seeds.begin() + end),
                   params, part);
    std::move(part.begin(), part.end(), out.begin() + start);
  }
  return out;
}

}  // namespace polar::sample
