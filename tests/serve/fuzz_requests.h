// Malformed HTTP requests for the server fuzz campaign: each is complete bytes for one connection
// and is wrong by construction (broken JSON, wrong types, limits exceeded, bad headers, unknown
// paths), so the only right answer is a 4xx.
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace polar::testing {

struct FuzzLimits {  // must match the server's flags
  int64_t max_sequences = 8;
  int64_t max_length = 128;
  int64_t max_body_bytes = 16384;
};

struct FuzzCase {
  std::string kind;   // which generator made it, for the report
  std::string bytes;  // the whole request
};

FuzzCase make_fuzz_case(std::mt19937_64& rng, const FuzzLimits& limits);

}  // namespace polar::testing
