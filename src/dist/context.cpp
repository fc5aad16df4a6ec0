// Context::create and the multi-process Context: TCPStore rendezvous (rank 0 hosts it), the
// Gloo/NCCL backend, parameter broadcast, metric all-reduce, and failure reports that name the
// collective and the ranks instead of hanging.
#include <torch/nn/module.h>
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <future>
#include <thread>

#include "backends.h"
#include "polar/common/error.h"
#include "process_group_context.h"

namespace polar::dist {
namespace {

// world_size 1: every call is local and free.
class LocalContext final : public Context {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void broadcast_module(torch::nn::Module&) override {}
  void all_reduce_sum(std::vector<double>&) override {}
  void barrier() override {}
  void attach_gradients(const std::vector<torch::Tensor>&) override {}
  void begin_micro_step(bool) override {}
  void finish_step(int64_t) override {}
  const ShardLayout& shard_layout() const override {
    throw Error("dist: shard_layout() needs zero_stage 1 or 2");
  }
  torch::Tensor gradient_shard() override {
    throw Error("dist: gradient_shard() needs zero_stage 1 or 2");
  }
  void all_gather_shard(const torch::Tensor&, const std::vector<torch::Tensor>&) override {
    throw Error("dist: all_gather_shard() needs zero_stage 1 or 2");
  }
  double last_exposed_comm_seconds() const override { return 0; }
  double last_total_comm_seconds() const override { return 0; }
  int64_t collective_count() const override { return 0; }
};

double seconds(std::chrono::milliseconds ms) { return ms.count() / 1000.0; }

std::string progress_key(int rank) { return fmt::format("polar/progress/{}", rank); }

// c10d's messages without the C++ stack trace that c10::Error appends, and without trailing
// punctuation, so that they read as one sentence inside ours.
std::string reason_of(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  const size_t raised = text.find("\nException raised from");
  if (raised != std::string::npos) text.resize(raised);
  while (!text.empty() && (std::isspace(static_cast<unsigned char>(text.back())) ||
                           text.back() == '.' || text.back() == '!')) {
    text.pop_back();
  }
  return text;
}

struct RendezvousTimeout : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The TCPStore constructor retries and backs off on its own schedule, which can run well past
// its timeout; here the whole rendezvous gets exactly `timeout`. It runs on a thread that is
// abandoned when the deadline passes (the process is about to exit with the error).
c10::intrusive_ptr<c10d::Store> connect_store(const std::string& host,
                                              const c10d::TCPStoreOptions& options,
                                              std::chrono::milliseconds timeout) {
  // c10d logs every failed connection attempt with a stack trace; our error says it once.
  const int log_level = FLAGS_caffe2_log_level;
  FLAGS_caffe2_log_level = std::max(log_level, 3);
  auto task =
      std::make_shared<std::packaged_task<c10::intrusive_ptr<c10d::Store>()>>([host, options] {
        return c10::intrusive_ptr<c10d::Store>(c10::make_intrusive<c10d::TCPStore>(host, options));
      });
  auto store = task->get_future();
  std::thread([task] { (*task)(); }).detach();
  if (store.wait_for(timeout + std::chrono::milliseconds(200)) != std::future_status::ready) {
    throw RendezvousTimeout("timed out");
  }
  auto connected = store.get();  // rethrows the constructor's error
  FLAGS_caffe2_log_level = log_level;
  return connected;
}

}  // namespace

std::shared_ptr<Context> Context::create(const DistEnv& env, const torch::Device& device,
                                         const DistOptions& options) {
  POLAR_CHECK(options.zero_stage >= 0 && options.zero_stage <= 2,
              "dist: zero_stage must be 0, 1 or 2, got ", options.zero_stage);
  if (env.world_size == 1 && !options.force_process_group && options.zero_stage == 0) {
    return std::make_shared<LocalContext>();
  }
  return std::make_shared<detail::ProcessGroupContext>(env, device, options);
}

namespace detail {

ProcessGroupContext::ProcessGroupContext(const DistEnv& env, const torch::Device& device,
                                         const DistOptions& options)
    : env_(env), device_(device), options_(options) {
  POLAR_CHECK(options.timeout.count() > 0, "dist timeout must be positive");
  POLAR_CHECK(device.is_cpu() || device.is_cuda(),
              "data parallelism supports CPU (Gloo) and CUDA (NCCL) devices, not ", device.str());
  backend_name_ = device.is_cuda() ? "NCCL" : "Gloo";
  local_ = env.world_size == 1 && !options.force_process_group;
  if (local_) return;  // one ZeRO process: no store, no process group
  const auto started = Clock::now();

  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(env.master_port);
  // Under torchrun the launcher already serves MASTER_PORT; a second server there would split the
  // ranks between two stores, so every rank joins the launcher's as a client.
  store_options.isServer = env.rank == 0 && !env.agent_store;
  if (!env.agent_store) store_options.numWorkers = static_cast<size_t>(env.world_size);
  store_options.waitWorkers = !env.agent_store;
  store_options.timeout = options.timeout;
  c10::intrusive_ptr<c10d::Store> raw_store;
  try {
    raw_store = connect_store(env.master_addr, store_options, options.timeout);
  } catch (const std::exception& e) {
    const std::string reason =
        dynamic_cast<const RendezvousTimeout*>(&e) ? "" : ": " + reason_of(e);
    if (env.agent_store) {
      throw Error(fmt::format(
          "rendezvous failed on rank {} of {}: could not join the launcher's store at {}:{} "
          "within {:.0f} s (TORCHELASTIC_USE_AGENT_STORE=True: is the torchrun agent still "
          "running?){}",
          env.rank, env.world_size, env.master_addr, env.master_port, seconds(options.timeout),
          reason));
    }
    if (env.rank == 0) {
      throw Error(fmt::format(
          "rendezvous failed on rank 0: it could not host the store on {}:{}, or not all {} ranks "
          "joined within "
          "{:.0f} s (a missing or misconfigured peer: check MASTER_ADDR/MASTER_PORT and WORLD_SIZE "
          "on every rank){}",
          env.master_addr, env.master_port, env.world_size, seconds(options.timeout), reason));
    }
    throw Error(
        fmt::format("rendezvous failed on rank {} of {}: could not join the store of rank 0 at "
                    "{}:{} within {:.0f} s (is rank 0 "
                    "running, with the same MASTER_ADDR/MASTER_PORT?){}",
                    env.rank, env.world_size, env.master_addr, env.master_port,
                    seconds(options.timeout), reason));
  }
  // torchrun's store outlives a restart round (one for the whole job), so the keys of a round
  // that died are still there when the next one starts: each round gets its own namespace.
  // Rank 0's own store is new every round.
  store_ = raw_store;
  if (env.agent_store) {
    const int64_t epoch = join_launcher_store(raw_store, started);
    store_ = c10::make_intrusive<c10d::PrefixStore>(fmt::format("polar/epoch{}", epoch), raw_store);
  }
  try {
    if (device.is_cuda()) {
      const int index = device.has_index() ? device.index() : env.local_rank;
      backend_ = make_nccl_backend(store_, env.rank, env.world_size, options.timeout, index);
    } else {
      backend_ =
          make_gloo_backend(store_, env.rank, env.world_size, options.timeout, env.master_addr);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(fmt::format(
        "connecting the {} process group failed on rank {} of {} ({}:{}, timeout {:.0f} s): {}",
        backend_name_, env.rank, env.world_size, env.master_addr, env.master_port,
        seconds(options.timeout), reason_of(e)));
  }
  spdlog::info("dist: {} connected with {} in {:.2f} s", env.describe(), backend_name_,
               std::chrono::duration<double>(Clock::now() - started).count());
}

namespace {

int64_t store_int(c10d::Store& store, const std::string& key) {
  const auto bytes = store.get(key);
  return std::stoll(std::string(bytes.begin(), bytes.end()));
}

void store_set(c10d::Store& store, const std::string& key, const std::string& value) {
  store.set(key, std::vector<uint8_t>(value.begin(), value.end()));
}

}  // namespace

// The epoch handshake. TORCHELASTIC_RESTART_COUNT cannot name a round: torchrun's agents count
// only their own failures (a node restarted because another one failed keeps its count), so the
// ranks agree on a number through the store. Rank 0 takes the next epoch from a counter, closes
// the epoch before it (so that no new rank joins a dead round) and opens its own; every other rank
// joins the open epoch unless it is full or closed, and waits until rank 0 has seen all of them.
// Keys: polar/epoch (counter), polar/epoch_open, polar/epoch/<g>/{joined,rank<r>,ready}.
int64_t ProcessGroupContext::join_launcher_store(const c10::intrusive_ptr<c10d::Store>& store,
                                                 Clock::time_point started) {
  const auto deadline = started + options_.timeout;
  const auto key = [](int64_t epoch, const std::string& name) {
    return fmt::format("polar/epoch/{}/{}", epoch, name);
  };
  const auto nap = [] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); };
  const int64_t world = env_.world_size;
  int64_t epoch = 0;
  try {
    if (env_.rank == 0) {
      epoch = store->add("polar/epoch", 1);
      if (epoch > 1) store->add(key(epoch - 1, "joined"), int64_t(1) << 40);  // close it
      store_set(*store, "polar/epoch_open", std::to_string(epoch));
      store->add(key(epoch, "joined"), 1);
      // The rank keys, not the count: a rank counts itself in before it writes its key.
      std::vector<std::string> everyone;
      for (int r = 1; r < world; ++r) everyone.push_back(key(epoch, fmt::format("rank{}", r)));
      while (!store->check(everyone) && Clock::now() < deadline) nap();
      std::vector<std::string> missing;
      for (int r = 1; r < world; ++r)
        if (!store->check({key(epoch, fmt::format("rank{}", r))}))
          missing.push_back(std::to_string(r));
      POLAR_CHECK(missing.empty(), "rendezvous failed on rank 0 of ", world, ": rank ",
                  fmt::format("{}", fmt::join(missing, ", rank ")),
                  " never joined the launcher's store at ", env_.master_addr, ":", env_.master_port,
                  " within ", seconds(options_.timeout), " s (TORCHELASTIC_RESTART_COUNT ",
                  env_.restart_count, "; did every rank's worker start?)");
      store_set(*store, key(epoch, "ready"), "1");
      return epoch;
    }
    int64_t stale = 0;  // the newest epoch found closed, full or abandoned
    while (Clock::now() < deadline) {
      if (!store->check({"polar/epoch_open"})) {
        nap();
        continue;
      }
      const int64_t open = store_int(*store, "polar/epoch_open");
      if (open <= stale) {
        nap();
        continue;
      }
      if (store->add(key(open, "joined"), 1) > world) {
        stale = open;  // closed by a newer rank 0, or full: a round that is gone
        continue;
      }
      store_set(*store, key(open, fmt::format("rank{}", env_.rank)), "1");
      while (Clock::now() < deadline) {
        if (store->check({key(open, "ready")})) return open;
        if (store_int(*store, "polar/epoch_open") != open) break;  // a new rank 0: follow it
        nap();
      }
      stale = open;
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(fmt::format(
        "rendezvous failed on rank {} of {}: the launcher's store at {}:{} stopped answering "
        "(the torchrun agent has probably exited): {}",
        env_.rank, env_.world_size, env_.master_addr, env_.master_port, reason_of(e)));
  }
  throw Error(fmt::format(
      "rendezvous failed on rank {} of {}: rank 0 did not open a round with every rank in the "
      "launcher's store at {}:{} within {:.0f} s (TORCHELASTIC_RESTART_COUNT {}; is rank 0 "
      "running?)",
      env_.rank, env_.world_size, env_.master_addr, env_.master_port, seconds(options_.timeout),
      env_.restart_count));
}

ProcessGroupContext::~ProcessGroupContext() {
  if (hook_link_) hook_link_->cut();
  if (broken_) {
    // A failed collective may still occupy a backend thread until the backend's own timeout;
    // destroying the backend would join it. The process is about to exit with the error, so
    // leave both to the operating system.
    (void)backend_.release();
    (void)store_.release();
    return;
  }
  try {
    if (backend_) backend_->shutdown();
  } catch (const std::exception& e) {
    spdlog::warn("dist: shutting down the {} process group: {}", backend_name_, e.what());
  }
}

c10::intrusive_ptr<c10d::Work> ProcessGroupContext::start_all_reduce(torch::Tensor& flat) {
  std::vector<torch::Tensor> tensors{flat};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  opts.timeout = options_.timeout;
  ++collectives_;
  return backend_->allreduce(tensors, opts);
}

void ProcessGroupContext::check_usable(const std::string& what) const {
  POLAR_CHECK(!broken_, "dist: cannot run ", what, " on rank ", env_.rank,
              ": an earlier collective failed and the process group is unusable");
}

void ProcessGroupContext::wait(const c10::intrusive_ptr<c10d::Work>& work,
                               const std::string& what) {
  bool completed = false;
  try {
    completed = work->wait(options_.timeout);
  } catch (const std::exception& e) {
    fail(what, reason_of(e));
  }
  if (!completed) fail(what, "timed out");
}

void ProcessGroupContext::fail(const std::string& what, const std::string& reason) {
  broken_ = true;
  throw Error(fmt::format("dist: {} failed on rank {} of {} (timeout {:.0f} s): {}. {}", what,
                          env_.rank, env_.world_size, seconds(options_.timeout), reason,
                          describe_peers()));
}

void ProcessGroupContext::mark_progress(const std::string& label) {
  ++progress_;
  if (local_) return;
  const std::string value = fmt::format("{} {}", progress_, label);
  try {
    store_->set(progress_key(env_.rank), std::vector<uint8_t>(value.begin(), value.end()));
  } catch (const std::exception& e) {
    broken_ = true;
    throw Error(
        fmt::format("dist: rank {} of {} cannot reach the rendezvous store {} at {}:{} before {} "
                    "({} has probably exited): {}",
                    env_.rank, env_.world_size, store_host(), env_.master_addr, env_.master_port,
                    label, store_host_short(), reason_of(e)));
  }
}

std::string ProcessGroupContext::store_host() const {
  return env_.agent_store ? "of the launcher" : "on rank 0";
}

std::string ProcessGroupContext::store_host_short() const {
  return env_.agent_store ? "the launcher" : "rank 0";
}

std::string ProcessGroupContext::describe_peers() {
  try {
    store_->setTimeout(std::chrono::seconds(5));
    std::vector<std::string> behind, silent;
    for (int r = 0; r < env_.world_size; ++r) {
      if (r == env_.rank) continue;
      if (!store_->check({progress_key(r)})) {
        silent.push_back(std::to_string(r));
        continue;
      }
      const auto bytes = store_->get(progress_key(r));
      const std::string value(bytes.begin(), bytes.end());
      const int64_t count = std::stoll(value.substr(0, value.find(' ')));
      if (count < progress_) {
        behind.push_back(fmt::format("rank {} (last reached #{}: {})", r, count,
                                     value.substr(value.find(' ') + 1)));
      }
    }
    if (behind.empty() && silent.empty()) {
      return fmt::format(
          "Every other rank reached this synchronisation point (#{}); one probably exited during "
          "it",
          progress_);
    }
    std::string text = fmt::format("This rank is at synchronisation point #{}", progress_);
    if (!behind.empty()) text += fmt::format("; behind it: {}", fmt::join(behind, ", "));
    if (!silent.empty())
      text += fmt::format("; never synchronised: rank {}", fmt::join(silent, ", rank "));
    return text;
  } catch (const std::exception&) {
    if (env_.rank == 0 && !env_.agent_store) return "The other ranks' progress could not be read";
    return fmt::format("The rendezvous store {} ({}:{}) is unreachable: {} has probably exited",
                       store_host(), env_.master_addr, env_.master_port, store_host_short());
  }
}

void ProcessGroupContext::all_reduce_sum(std::vector<double>& values) {
  if (values.empty() || local_) return;
  const std::string what = fmt::format("all_reduce_sum of {} value(s)", values.size());
  check_usable(what);
  mark_progress(what);
  auto flat = torch::tensor(values, torch::kFloat64).to(device_);  // (n,)
  wait(start_all_reduce(flat), what);
  auto host = flat.cpu();
  std::copy(host.data_ptr<double>(), host.data_ptr<double>() + values.size(), values.begin());
}

void ProcessGroupContext::barrier() {
  // An all-reduce of one value works the same on every backend (NCCL's barrier guesses devices).
  std::vector<double> one{1.0};
  all_reduce_sum(one);
}

void ProcessGroupContext::broadcast_module(torch::nn::Module& module) {
  if (local_) return;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& item : module.named_parameters(true))
    tensors.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers(true))
    tensors.emplace_back(item.key(), item.value());

  // Every rank must hold the same tensors in the same order, or the broadcast would pair up
  // unrelated tensors: compare counts, sizes and a hash of the names first.
  size_t name_hash = 0;
  double numel = 0;
  for (const auto& [name, tensor] : tensors) {
    name_hash =
        name_hash * 31 + std::hash<std::string>{}(name) + static_cast<size_t>(tensor.numel());
    numel += static_cast<double>(tensor.numel());
  }
  // Reduced to 40 bits so that the sum over ranks stays exact in a double.
  const std::vector<double> mine{static_cast<double>(tensors.size()), numel,
                                 static_cast<double>(name_hash & ((uint64_t(1) << 40) - 1))};
  std::vector<double> sums = mine;
  all_reduce_sum(sums);
  for (size_t i = 0; i < mine.size(); ++i) {
    POLAR_CHECK(sums[i] == mine[i] * env_.world_size, "dist: rank ", env_.rank,
                " holds a different model than the other ranks (", tensors.size(), " tensors, ",
                numel, " elements); every rank must build the same model from the same config");
  }

  torch::NoGradGuard no_grad;
  check_usable("broadcast_module");
  mark_progress("broadcast_module");
  // Chunks of one dtype up to bucket_bytes: few collectives, bounded extra memory.
  size_t begin = 0;
  while (begin < tensors.size()) {
    const auto dtype = tensors[begin].second.scalar_type();
    size_t end = begin;
    int64_t bytes = 0;
    std::vector<torch::Tensor> flat_parts;
    while (end < tensors.size() && tensors[end].second.scalar_type() == dtype &&
           (end == begin ||
            bytes + static_cast<int64_t>(tensors[end].second.nbytes()) <= options_.bucket_bytes)) {
      bytes += tensors[end].second.nbytes();
      flat_parts.push_back(tensors[end].second.detach().reshape(-1).to(device_));
      ++end;
    }
    auto flat = torch::cat(flat_parts);  // (numel of the chunk,)
    std::vector<torch::Tensor> list{flat};
    c10d::BroadcastOptions opts;
    opts.rootRank = 0;
    opts.timeout = options_.timeout;
    ++collectives_;
    wait(backend_->broadcast(list, opts),
         fmt::format("broadcast of parameters '{}'..'{}'", tensors[begin].first,
                     tensors[end - 1].first));
    int64_t offset = 0;
    for (size_t i = begin; i < end; ++i) {
      auto& tensor = tensors[i].second;
      tensor.copy_(flat.narrow(0, offset, tensor.numel()).view(tensor.sizes()));
      offset += tensor.numel();
    }
    begin = end;
  }
}

}  // namespace detail
}  // namespace polar::dist
