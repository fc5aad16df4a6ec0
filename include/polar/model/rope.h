// Rotary position embeddings as transformers computes them, written once for the reward model's
// layers and the sampler's cached decoding: inverse frequencies in fp32 (rope_type linear or
// llama3, model/config.h), angles in fp32, cos/sin cast to the model dtype.
#pragma once

#include <torch/types.h>

#include "polar/model/config.h"

namespace polar {

// The inverse frequency of each pair of head dimensions: (head_dim / 2) fp32 on `device`.
torch::Tensor rope_inv_freq(const ModelConfig& config, const torch::Device& device);

struct RopeTables {
  torch::Tensor cos, sin;  // (B, T, 1, head_dim), shared by the heads of a token
};

// Tables for positions (B, T) int64, in `dtype`, on the positions' device.
RopeTables rope_tables(const ModelConfig& config, const torch::Tensor& positions,
                       torch::ScalarType dtype);

}  // namespace polar
