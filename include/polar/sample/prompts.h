// Prompts for `polar sample`: given ones (JSONL {"prompt"[, "category"]},
// prompt a string or a messages list) and, as POLAR builds them, random
// prefixes of 1..L tokens of corpus texts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "polar/tokenizer/tokenizer.h"

namespace polar::sample {

struct Prompt {
  std::string text;
  std::string category;     // "" when none
  bool instruction = true;  // false: a corpus prefix (for base policies, by `--scheme paper`)
};

// Reads a prompts JSONL; errors name FILE:LINE.
std::vector<Prompt> read_prompts(const std::string& path);

struct CorpusPrefixOptions {
  int64_t max_prefix_tokens = 1024;  // L: prefixes have 1..L tokens (at most the text's length)
  uint64_t seed = 0;
  std::string category;  // given to every corpus prompt
};

// One prompt per non-empty text of `path`: a text file (one text per line) or
// JSONL with a "text" field (.jsonl). The prefix length is uniform in 1..min(L,
// tokens of the text), drawn from a generator seeded by (seed, line), so it
// does not depend on other lines.
std::vector<Prompt> corpus_prefix_prompts(const std::string& path, const Tokenizer& tokenizer,
                                          const CorpusPrefixOptions& options);

// Keeps every corpus prefix and as many instruction prompts (chosen by a seeded hash of their
// text) as make up about `share` (in [0, 1)) of the result; the order of the kept ones stays.
std::vector<Prompt> with_instruction_share(const std::vector<Prompt>& prompts, double share,
                                           uint64_t seed);

}  // namespace polar::sample
