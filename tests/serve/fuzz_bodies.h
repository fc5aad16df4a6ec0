// Valid request bodies for every scoring endpoint (vLLM /pooling and /classify, SGLang /classify,
// OpenAI /v1/embeddings, polar /score, OpenRLHF /get_reward), the seeds the fuzz campaigns mutate,
// and the checks a body's outcome must pass: a parsed body holds what it lists, a refused one gets
// a 4xx naming a key.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "polar/serve/protocol.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar::testing {

struct BodySeed {
  std::string path;  // "/pooling", "/classify", "/v1/embeddings", "/score" or "/get_reward"
  nlohmann::json body;
};

std::vector<BodySeed> valid_bodies(const Tokenizer& tok);

// Parses `text` as the server does for `path` (body, endpoint parser, token budget).
serve::ParsedRequest parse_request(const std::string& path, const std::string& text,
                                   const Tokenizer& tok, const serve::RequestLimits& limits);

// "" when an accepted body's parse is consistent: as many sequences as the body lists, each
// ending with the reward token, within the limits, every id in the vocabulary. Else the problem.
std::string check_parsed(const std::string& path, const std::string& text,
                         const serve::ParsedRequest& req, const Tokenizer& tok,
                         const serve::RequestLimits& limits);

// "" when a refusal is a 4xx whose message names a key, the body or the limit. Else the problem.
std::string check_refusal(int status, const std::string& message);

}  // namespace polar::testing
