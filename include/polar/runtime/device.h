// Where a model runs and how: the device a run asks for, moving a packed batch there, and the
// autocast that bf16 precision means on CUDA. Shared by training, evaluation, scoring and serving.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>

#include "polar/common/precision.h"
#include "polar/data/batch.h"

namespace polar {

// "auto" -> cuda:<local_rank> when CUDA is available, else cpu; "cpu"; "cuda" / "cuda:N".
torch::Device resolve_device(const std::string& name, int local_rank);

// The batch on `device`: its packed buffer in one copy (non-blocking from pinned memory), the
// tensors views of it; a batch built by hand tensor by tensor. A CPU device returns it as is.
PackedBatch to_device(PackedBatch batch, const torch::Device& device);
// The batch with every tensor that is a view of batch.storage made the same view of `copy` (a
// copy of batch.storage, e.g. on another device); the others are copied to copy's device.
PackedBatch with_storage(PackedBatch batch, const torch::Tensor& copy);

// bf16 autocast on CUDA when precision is Bf16; a no-op otherwise. Restores on destruction.
std::shared_ptr<void> autocast_guard(Precision precision, const torch::Device& device);

}  // namespace polar
