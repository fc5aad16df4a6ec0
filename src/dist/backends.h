// Private to src/dist: construction of the c10d process-group backends (Gloo for CPU tensors,
// NCCL for CUDA tensors) over an already-connected store.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <string>

namespace polar::dist::detail {

// `master_addr` picks the network device: a loopback master means every rank is on this host,
// so Gloo binds 127.0.0.1; otherwise GLOO_SOCKET_IFNAME (comma-separated) or the address this
// host's name resolves to, as torch.distributed does.
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    std::chrono::milliseconds timeout,
                                                    const std::string& master_addr);

// Throws polar::Error when this build has no NCCL (CPU LibTorch or no nccl.h at build time).
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    std::chrono::milliseconds timeout,
                                                    int device_index);
bool nccl_available();

}  // namespace polar::dist::detail
