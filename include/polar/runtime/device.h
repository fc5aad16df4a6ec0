// Where a model runs and how: the device a run asks for, moving a packed batch there, and the
// autocast that bf16 precision means on CUDA. Shared by training, evaluation, scoring and serving.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>

#include "polar/data/batch.h"

namespace polar {

// "auto" -> cuda:<local_rank> when CUDA is available, else cpu; "cpu"; "cuda" / "cuda:N".
torch::Device resolve_device(const std::string& name, int local_rank);

// The batch's tensors on `device` (non-blocking copies on CUDA); the batch itself on the CPU.
PackedBatch to_device(PackedBatch batch, const torch::Device& device);

// bf16 autocast on CUDA when precision == "bf16"; a no-op otherwise. Restores on destruction.
std::shared_ptr<void> autocast_guard(const std::string& precision, const torch::Device& device);

}  // namespace polar
