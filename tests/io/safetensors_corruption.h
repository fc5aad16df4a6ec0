// Seeded corruption campaign for the safetensors parser (torch-free): mutates valid file images
// and checks that each one either parses to a result that passes an independent tiling check or
// throws polar::Error naming the file. Used by tests/io/test_safetensors_corruption.cpp and by
// scripts/asan_safetensors.sh (built there with ASan/UBSan, without CMake or torch).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace polar::io::testing {

struct CampaignResult {
  uint64_t mutations = 0, accepted = 0, rejected = 0;
  std::map<std::string, uint64_t> by_kind;   // mutation kind -> count
  std::map<std::string, uint64_t> by_error;  // error class (e.g. "overlap", "hole") -> count
  std::vector<std::string>
      failures;  // anything but (valid result | polar::Error), or a broken expectation
  std::vector<std::string> base_labels;  // the valid images mutations start from
};

// Runs n_files mutated images derived from a fixed set of valid images; deterministic in seed.
CampaignResult run_corruption_campaign(uint64_t seed, uint64_t n_files);

// Every error class the campaign counts, in the order it reports them.
const std::vector<std::string>& corruption_error_classes();

// 8-byte little-endian length prefix for `header` + header + data: a file image built by hand.
std::string make_safetensors_image(const std::string& header, const std::string& data);

}  // namespace polar::io::testing
