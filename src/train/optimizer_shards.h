// Private to src/train: the sharded optimizer's state and its checkpoint files. Each rank writes
// optimizer-shard-RRRRR-of-NNNNN.pt holding its pieces (parameter index, offset, length) and the
// master weights and AdamW moments of those elements; a reader at any world size copies, from
// every file, the elements that fall into its own pieces (resharding on load).
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "polar/dist/dist.h"

namespace polar {

struct ShardState {
  torch::Tensor master, exp_avg, exp_avg_sq;  // (layout.numel,) float32
  int64_t step = 0;
};

bool has_optimizer_shards(const std::string& checkpoint_dir);

// Writes the file atomically (temporary name, then rename) into `staging_dir`.
void write_optimizer_shard(const std::string& staging_dir, int rank, int world,
                           const dist::ShardLayout& layout,
                           const std::vector<torch::Tensor>& params, const ShardState& state);

// Fills `state` for `layout` from all shard files of `checkpoint_dir`; every element of the
// layout must be covered and the files must describe the same parameters.
void read_optimizer_shards(const std::string& checkpoint_dir, const dist::ShardLayout& layout,
                           const std::vector<torch::Tensor>& params, ShardState& state);

}  // namespace polar
