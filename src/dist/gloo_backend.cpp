// c10d::ProcessGroupGloo from the copy compiled into libtorch_cpu.so.
//
// The torch wheel ships torch/csrc/distributed/c10d/ProcessGroupGloo.hpp but not the gloo headers
// it includes (gloo/context.h, ...), so that header cannot be compiled here. Gloo's types only
// appear in it behind pointers, so this file declares the part of the class it uses: the
// exported constructor and device factories, Options, and the data members in the wheel's
// declaration order (this file allocates the object, so its size must be the library's). Every
// call after construction goes through the c10d::Backend vtable, which the library's constructor
// installs (from another translation unit, so the compiler cannot bind those calls to this
// declaration). check_layout() verifies members at both ends after construction, so a wheel
// whose class differs fails loudly instead of corrupting memory silently.
// Source of truth: ProcessGroupGloo.hpp of the pinned wheel (torch 2.11), same directory.
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/logger.hpp>

#include <fmt/format.h>

#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "backends.h"
#include "polar/common/error.h"

#ifndef USE_C10D_GLOO
#error "polar needs a LibTorch built with Gloo (USE_C10D_GLOO) for CPU data parallelism"
#endif

namespace gloo {
class Context;
namespace rendezvous {
class Store;
}
namespace transport {
class Device;
}
}  // namespace gloo

namespace c10d {

class TORCH_API ProcessGroupGloo : public Backend {
 public:
  class AsyncWork;

  struct TORCH_API Options : public Backend::Options {
    explicit Options(std::chrono::milliseconds timeout);
    std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
    int threads{2};
  };

  static std::shared_ptr<::gloo::transport::Device> createDeviceForInterface(
      const std::string& interface, bool lazyInit);
  static std::shared_ptr<::gloo::transport::Device> createDeviceForHostname(
      const std::string& hostname, bool lazyInit);
  static std::shared_ptr<::gloo::transport::Device> createDefaultDevice(bool lazyInit);

  ProcessGroupGloo(const c10::intrusive_ptr<Store>& store, int rank, int size,
                   c10::intrusive_ptr<Options> options);
  ~ProcessGroupGloo() override;

  // Data members, in the wheel's order (protected there; access does not change the layout).
  std::shared_ptr<::gloo::rendezvous::Store> store_;
  const c10::intrusive_ptr<Options> options_;
  std::vector<std::shared_ptr<::gloo::Context>> contexts_;
  std::vector<std::thread> threads_;
  bool stop_;
  uint32_t collectiveCounter_;
  // std::deque / std::vector of c10::intrusive_ptr<AsyncWork>: a pointer per element, and the
  // containers' layout does not depend on the element type.
  std::deque<void*> workQueue_;
  std::vector<void*> workInProgress_;
  std::mutex workMutex_;
  std::condition_variable workProduceCV_;
  std::condition_variable workConsumeCV_;
  uint64_t seq_;
  size_t local_id_;
  std::shared_ptr<ProcessGroupStatus> pgStatus_;
};

}  // namespace c10d

namespace polar::dist::detail {
namespace {

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

std::vector<std::shared_ptr<::gloo::transport::Device>> gloo_devices(
    const std::string& master_addr) {
  using c10d::ProcessGroupGloo;
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  if (const char* ifnames = std::getenv("GLOO_SOCKET_IFNAME"); ifnames && *ifnames) {
    std::string list = ifnames;
    for (size_t begin = 0; begin <= list.size();) {
      size_t end = std::min(list.find(',', begin), list.size());
      if (end > begin)
        devices.push_back(
            ProcessGroupGloo::createDeviceForInterface(list.substr(begin, end - begin), false));
      begin = end + 1;
    }
  } else if (is_loopback(master_addr)) {
    devices.push_back(ProcessGroupGloo::createDeviceForHostname("127.0.0.1", false));
  } else {
    devices.push_back(ProcessGroupGloo::createDefaultDevice(false));
  }
  return devices;
}

void check_layout(const c10d::ProcessGroupGloo& pg,
                  const c10d::ProcessGroupGloo::Options* options) {
  // No virtual call here: the compiler knows the dynamic type from the allocation above and could
  // bind it to this declaration (which overrides nothing) instead of the library's vtable.
  const bool ok = pg.options_.get() == options && pg.pgStatus_ != nullptr &&
                  pg.pgStatus_->lastCompletedSeq == -1 &&
                  pg.threads_.size() == static_cast<size_t>(options->threads);
  POLAR_CHECK(ok,
              "c10d::ProcessGroupGloo in this LibTorch does not match the declaration in "
              "src/dist/gloo_backend.cpp (written for torch 2.11); update it from the wheel's "
              "ProcessGroupGloo.hpp");
}

}  // namespace

c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    std::chrono::milliseconds timeout,
                                                    const std::string& master_addr) {
  auto options = c10::make_intrusive<c10d::ProcessGroupGloo::Options>(timeout);
  options->devices = gloo_devices(master_addr);
  // Two threads let one bucket's all-reduce run while the next is being queued.
  options->threads = 2;
  auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
  check_layout(*pg, options.get());
  return pg;
}

}  // namespace polar::dist::detail
