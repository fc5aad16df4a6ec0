#include "polar/train/bench.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <sys/resource.h>
#include <unistd.h>
#include <chrono>
#include <filesystem>
#include <random>

#if __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define POLAR_HAVE_CUDA_ALLOCATOR 1
#endif
#ifdef POLAR_WITH_CUDA
#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#endif

#include "polar/checkpoint/checkpoint.h"
#include "polar/common/error.h"
#include "polar/data/shards.h"
#include "polar/model/lora.h"
#include "polar/runtime/device.h"
#include "polar/train/spec_peak.h"
#include "polar/train/trainer.h"
#include "profile.h"

namespace fs = std::filesystem;

namespace polar {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

json BenchResult::to_json() const {
  return json{{"device", device},
              {"precision", precision},
              {"parameters", parameters},
              {"tokens_per_step", tokens_per_step},
              {"tokens_per_s", tokens_per_s},
              {"ms_per_step", ms_per_step},
              {"achieved_gflops", achieved_gflops},
              {"peak_gflops", peak_gflops},
              {"peak_kind", peak_kind},
              {"mfu", mfu},
              {"device_name", device_name},
              {"spec_name", spec_name.empty() ? json(nullptr) : json(spec_name)},
              {"spec_peak_gflops", spec_peak_gflops > 0 ? json(spec_peak_gflops) : json(nullptr)},
              {"mfu_spec_peak", spec_peak_gflops > 0 ? json(mfu_spec) : json(nullptr)},
              {"peak_memory_mb", peak_memory_mb},
              {"pairs_per_step", pairs_per_step},
              {"pairs_per_s", pairs_per_s},
              {"cpu_ms_per_step", cpu_ms_per_step}};
}

namespace {

void synchronize(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

double peak_memory_mb(const torch::Device& d) {
#ifdef POLAR_HAVE_CUDA_ALLOCATOR
  if (d.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d.index());
    return static_cast<double>(stats.allocated_bytes[0].peak) / (1 << 20);
  }
#endif
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

double process_cpu_seconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  const auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec);
  };
  return seconds(ru.ru_utime) + seconds(ru.ru_stime);
}

// Lengths of one group's prefix and candidates: fixed halves of seq_len, or POLAR-shaped.
struct GroupShape {
  int64_t prefix = 0;
  std::vector<int64_t> candidates;
};

GroupShape draw_shape(const BenchOptions& o, std::mt19937_64& rng) {
  GroupShape s;
  if (o.lengths == "fixed") {
    s.prefix = o.seq_len / 2;
    s.candidates.assign(static_cast<size_t>(o.negatives + 1), o.seq_len - s.prefix);
    return s;
  }
  std::uniform_int_distribution<int64_t> prompt(32, 256), response(64, 512);
  const int64_t p = prompt(rng);
  s.prefix =
      1 + p + 1 + response(rng) + 1 + p + 1;  // bos prompt sep reference <|reward|> prompt sep
  for (int64_t k = 0; k <= o.negatives; ++k)
    s.candidates.push_back(response(rng) + 1);  // + reward token
  return s;
}

// A split of random groups written to `dir`: tokens in [4, vocab).
void write_random_split(const std::string& dir, int64_t n_groups, const BenchOptions& o,
                        int64_t vocab) {
  POLAR_CHECK(o.lengths == "fixed" || o.lengths == "polar",
              "bench: --lengths must be fixed or polar, got ", o.lengths);
  std::mt19937_64 rng(1234);
  std::uniform_int_distribution<int32_t> tok(4, static_cast<int32_t>(vocab - 1));
  ShardWriter writer(dir, TemplateKind::Finetune);
  for (int64_t g = 0; g < n_groups; ++g) {
    const GroupShape shape = draw_shape(o, rng);
    EncodedGroup e;
    for (int64_t i = 0; i < shape.prefix; ++i) e.prefix.push_back(tok(rng));
    for (int64_t length : shape.candidates) {
      std::vector<int32_t> c;
      for (int64_t i = 0; i < length; ++i) c.push_back(tok(rng));
      e.candidates.push_back(std::move(c));
    }
    writer.add(e, 0);
  }
  writer.finish({"random"});
}

// The CUDA device's name as the driver reports it ("NVIDIA H100 80GB HBM3"), or "cpu".
std::string device_name(const torch::Device& d) {
#ifdef POLAR_WITH_CUDA
  if (d.is_cuda()) {
    const c10::DeviceIndex index = d.has_index() ? d.index() : c10::cuda::current_device();
    return at::cuda::getDeviceProperties(index)->name;
  }
#endif
  return d.is_cuda() ? "cuda" : "cpu";
}

// The precision the run's matmuls take on the tensor cores: bf16 under Precision::Bf16 on a GPU,
// otherwise fp32, or tf32 where TF32 is enabled for cuBLAS (it is off unless the user turns it on).
MatmulPrecision run_matmul_precision(const torch::Device& d, Precision precision) {
  if (!d.is_cuda()) return MatmulPrecision::Fp32;
  if (precision == Precision::Bf16) return MatmulPrecision::Bf16;
#ifdef POLAR_WITH_CUDA
  if (at::globalContext().float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL) ==
      at::Float32Precision::TF32)
    return MatmulPrecision::Tf32;
#endif
  return MatmulPrecision::Fp32;
}

}  // namespace

double measure_matmul_peak_gflops(const torch::Device& device, Precision precision,
                                  std::string* kind) {
  bool bf16 = device.is_cuda() && precision == Precision::Bf16;
  int64_t n = device.is_cuda() ? 8192 : 1024;
  auto dtype = bf16 ? torch::kBFloat16 : torch::kFloat32;
  auto a = torch::randn({n, n}, torch::TensorOptions().device(device).dtype(dtype));
  auto b = torch::randn({n, n}, torch::TensorOptions().device(device).dtype(dtype));
  for (int i = 0; i < 2; ++i) torch::mm(a, b);
  synchronize(device);
  int reps = device.is_cuda() ? 20 : 10;
  double best = 0;
  for (int trial = 0; trial < 3; ++trial) {
    auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) torch::mm(a, b);
    synchronize(device);
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * n * reps / s / 1e9);
  }
  if (kind)
    *kind = fmt::format("{} {}x{} matmul, {} threads", bf16 ? "bf16" : "fp32", n, n,
                        torch::get_num_threads());
  return best;
}

namespace {

// The bench's run: the random split, a model drawn on the device (a 7B model's draw on the CPU
// takes minutes) and, with model.lora, the adapters on its frozen base as a LoRA run trains them.
RunSetup bench_setup(TrainConfig& c, const torch::Device& device,
                     const std::optional<std::string>& /*resume_from*/) {
  RunSetup r;
  r.device = device;
  r.train_data = GroupDataset::open(c.data.train);
  const auto t0 = Clock::now();
  r.model = RewardModel(c.model.shape, /*initialize=*/false);
  r.model->to(device);
  r.model->reset_parameters(1, /*on_device=*/device.is_cuda());
  if (c.model.lora.enabled()) {
    add_lora(*r.model, c.model.lora, 1);
    if (device.is_cuda() && c.train.precision == Precision::Bf16)
      cast_frozen_matrices(*r.model, torch::kBFloat16);
  }
  spdlog::info("bench: model of {:.2f}B parameters initialised on {} in {:.1f} s",
               static_cast<double>(c.model.shape.num_parameters()) / 1e9, device.str(),
               std::chrono::duration<double>(Clock::now() - t0).count());
  r.resolved_config = c.to_json();
  return r;
}

}  // namespace

BenchResult run_bench(TrainConfig cfg, const BenchOptions& o) {
  fs::path dir = fs::temp_directory_path() / ("polar-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  BenchResult res;
  try {
    // A fine-tuning config names its shape through a checkpoint.
    const std::string& shape_source =
        !cfg.model.init_from.empty() ? cfg.model.init_from : cfg.model.shape_from;
    if (!shape_source.empty()) cfg.model.shape = load_model_shape(shape_source);
    const int64_t total_steps = o.steps + o.warmup_steps + (o.profile.empty() ? 0 : 1);
    int64_t vocab = cfg.model.shape.vocab_size;
    write_random_split((dir / "train").string(), cfg.train.batch_groups * total_steps, o, vocab);
    cfg.data.train = (dir / "train").string();
    cfg.data.eval = "";
    cfg.train.steps = total_steps;
    cfg.run.output_dir = (dir / "run").string();
    cfg.run.tensorboard = false;
    cfg.data.row_tokens = std::max(cfg.data.row_tokens, o.seq_len);
    Trainer trainer(cfg, false, bench_setup);
    torch::Device device = resolve_device(cfg.train.device, 0);
    for (int64_t s = 0; s < o.warmup_steps; ++s) trainer.train_step(s);
    synchronize(device);
    auto t0 = Clock::now();
    const double cpu0 = process_cpu_seconds();
    int64_t tokens = 0, pairs = 0;
    const int64_t timed_end = o.warmup_steps + o.steps;
    for (int64_t s = o.warmup_steps; s < timed_end; ++s) {
      const StepStats st = trainer.train_step(s);
      tokens += st.tokens;
      pairs += st.pairs;
    }
    synchronize(device);
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    res.cpu_ms_per_step = 1000.0 * (process_cpu_seconds() - cpu0) / static_cast<double>(o.steps);
    if (!o.profile.empty()) {
      const auto step = [&] {
        trainer.train_step(timed_end);
        synchronize(device);
      };
      spdlog::info("bench: {}", profile_step(step, o.profile, device.is_cuda(), 30));
    }
    res.device = device.str();
    res.precision = choice_name(cfg.train.precision);
    res.parameters = cfg.model.shape.num_parameters();
    res.tokens_per_step = tokens / std::max<int64_t>(1, o.steps);
    res.tokens_per_s = static_cast<double>(tokens) / secs;
    res.pairs_per_step = pairs / std::max<int64_t>(1, o.steps);
    res.pairs_per_s = static_cast<double>(pairs) / secs;
    res.ms_per_step = 1000.0 * secs / static_cast<double>(o.steps);
    // Training = forward + backward = 3x the forward FLOPs.
    res.achieved_gflops = 3.0 * cfg.model.shape.flops_per_token(o.seq_len) * res.tokens_per_s / 1e9;
    res.peak_gflops = measure_matmul_peak_gflops(device, cfg.train.precision, &res.peak_kind);
    res.mfu = res.achieved_gflops / res.peak_gflops;
    res.device_name = device_name(device);
    set_spec_peak(res, device.is_cuda(), run_matmul_precision(device, cfg.train.precision));
    res.peak_memory_mb = peak_memory_mb(device);
  } catch (...) {
    fs::remove_all(dir);
    throw;
  }
  fs::remove_all(dir);
  return res;
}

}  // namespace polar
