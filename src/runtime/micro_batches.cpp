// The one micro-batch loop (see micro_batches.h).
#include "polar/runtime/micro_batches.h"

#include <torch/torch.h>

#include "polar/runtime/device.h"

namespace polar {

size_t for_each_micro_batch(RewardModel& model, const std::vector<GroupRef>& groups,
                            const MicroBatchOptions& options, const MicroBatchFn& on_rewards) {
  const torch::Device device = model->parameters().front().device();
  PackOptions pack = options.pack;
  pack.pinned = device.is_cuda();  // so that the one copy to the device is asynchronous
  const auto ranges = split_micro_batches(groups, options.token_budget, pack.shared_prefix);
  for (size_t m = 0; m < ranges.size(); ++m) {
    const std::vector<GroupRef> slice(groups.begin() + ranges[m].first,
                                      groups.begin() + ranges[m].second);
    const PackedBatch batch = to_device(pack_groups(slice, pack), device);
    torch::Tensor rewards;  // (N)
    {
      auto autocast = autocast_guard(options.precision, device);
      rewards = model->forward(batch).to(torch::kFloat32);
    }
    on_rewards(MicroBatch{batch, rewards, m, ranges.size()});
  }
  return ranges.size();
}

}  // namespace polar
