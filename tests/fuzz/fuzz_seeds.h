// Valid seeds the fuzz campaigns mutate: tokenizer.json files (a byte-level BPE in the GPT-2 /
// Llama 3 style and a Metaspace BPE with byte fallback in the Llama 2 style, each with bos and
// POLAR's template tokens as added tokens) and a sampler pool file (server and built-in policies).
#pragma once

#include <nlohmann/json.hpp>

#include <vector>

namespace polar::fuzz {

std::vector<nlohmann::json> tokenizer_json_seeds();
// Built-in policies name model_dir "lm" and tokenizer "tok", relative to the pool file.
nlohmann::json pool_seed();

}  // namespace polar::fuzz
