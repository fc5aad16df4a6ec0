#include "polar/train/trainer.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>

#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/verify.h"
#include "polar/common/activity.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/common/kill_point.h"
#include "polar/data/batch.h"
#include "polar/dist/dist.h"
#include "polar/kernels/attention.h"
#include "polar/kernels/cuda.h"
#include "polar/loss/loss_registry.h"
#include "polar/loss/polar_loss.h"
#include "polar/model/reward_model.h"
#include "polar/runtime/device.h"
#include "polar/runtime/micro_batches.h"
#include "polar/train/data_order.h"
#include "polar/train/event_writer.h"
#include "polar/train/memory_plan.h"
#include "polar/train/optimizer.h"
#include "polar/train/param_groups.h"
#include "polar/train/step_contract.h"

namespace fs = std::filesystem;

namespace polar {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::atomic<int> g_stop_signal{0};

void on_stop_signal(int sig) { g_stop_signal.store(sig); }

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  int64_t t = static_cast<int64_t>(s);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

}  // namespace

void install_stop_signal_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

int pending_stop_signal() { return g_stop_signal.load(); }

struct Trainer::State {
  TrainConfig cfg;
  RunSetup setup;  // model, tokenizer, datasets, device
  std::shared_ptr<dist::Context> ctx;
  std::unique_ptr<TrainOptimizer> optimizer;
  std::vector<torch::Tensor> params;
  std::vector<ParamRole> group_roles;  // the role of each optimizer param group
  std::unique_ptr<GroupStream> stream;
  TrainerState state;
  std::ofstream metrics;
  std::unique_ptr<EventWriter> events;  // TensorBoard (rank 0, run.tensorboard)
  bool use_fused = false;
  AttentionImpl attention = AttentionImpl::Auto;  // chosen once per run (choose_run_attention)
  MemoryPlan plan;
};

namespace {

PackOptions pack_options(const DataSection& data, const Tokenizer& tokenizer) {
  PackOptions pack;
  pack.row_tokens = data.row_tokens;
  pack.pad_id = std::max(tokenizer.special().pad, 0);
  pack.shared_prefix = data.shared_prefix;
  return pack;
}

MicroBatchOptions micro_batch_options(const TrainConfig& cfg, const Tokenizer& tokenizer) {
  MicroBatchOptions o;
  o.pack = pack_options(cfg.data, tokenizer);
  o.token_budget = cfg.data.micro_batch_tokens;
  o.precision = cfg.train.precision;
  return o;
}

// Loss statistics summed over micro-batches on the device: read once, at the end of the step.
torch::Tensor zero_stats(const torch::Device& device) {
  return torch::zeros({4}, torch::TensorOptions().dtype(torch::kDouble).device(device));
}

// The groups rank `rank` trains on at `step`.
std::vector<GroupRef> rank_groups(Trainer::State& s, int64_t step, int rank) {
  std::vector<GroupRef> groups;
  for (int64_t i : s.stream->step_groups(step, s.cfg.train.batch_groups, rank, s.ctx->world_size()))
    groups.push_back(s.setup.train_data.group(i));
  return groups;
}

// The loss divisor: the step's pair count over all ranks, known without communication.
int64_t global_pair_count(Trainer::State& s, int64_t step) {
  int64_t pairs = 0;
  for (int64_t k = 0; k < s.cfg.train.batch_groups; ++k) {
    const GroupRef group =
        s.setup.train_data.group(s.stream->at(step * s.cfg.train.batch_groups + k));
    pairs += static_cast<int64_t>(group.candidates.size()) - 1;
  }
  return pairs;
}

// ZeRO-2 reduce-scatters every micro-step, so every rank runs as many rounds as the rank with the
// most micro-batches this step; each rank can work that out from the data order alone.
int64_t max_micro_steps(Trainer::State& s, int64_t step) {
  int64_t most = 1;
  for (int r = 0; r < s.ctx->world_size(); ++r) {
    const std::vector<GroupRef> groups = rank_groups(s, step, r);
    most = std::max<int64_t>(
        most, static_cast<int64_t>(split_micro_batches(groups, s.cfg.data.micro_batch_tokens,
                                                       s.cfg.data.shared_prefix)
                                       .size()));
  }
  return most;
}

// Measured memory at the end of a run: the peak against the plan (rank 0) and, on every rank,
// the bytes of optimizer state and gradients it holds (these fall as 1/N with ZeRO).
void log_memory(Trainer::State& s) {
  const int64_t peak = measured_peak_bytes(s.setup.device.is_cuda(), s.setup.device.index());
  int64_t grad_bytes = 0;
  for (const auto& p : s.params)
    if (p.grad().defined()) grad_bytes += static_cast<int64_t>(p.grad().nbytes());
  if (s.cfg.train.zero > 0) grad_bytes += static_cast<int64_t>(s.ctx->gradient_shard().nbytes());
  spdlog::info("memory on rank {}: optimizer state {} bytes, gradients {} bytes", s.ctx->rank(),
               s.optimizer->state_bytes(), grad_bytes);
  if (s.ctx->is_main()) {
    spdlog::info("memory: measured peak {:.1f} MiB ({}), predicted {:.1f} MiB ({:+.1f}%)",
                 peak / 1048576.0,
                 s.setup.device.is_cuda() ? "CUDA max allocated" : "RSS high-water mark",
                 s.plan.peak / 1048576.0,
                 100.0 * (static_cast<double>(s.plan.peak) - static_cast<double>(peak)) /
                     static_cast<double>(peak));
  }
}

// The checkpoint's staging dir with every rank's optimizer state in it (collective).
std::string stage_optimizer_state(Trainer::State& s, const std::string& dir) {
  const std::string staging = dir + ".staging";
  if (s.ctx->is_main()) {
    fs::remove_all(staging);
    fs::create_directories(staging);
  }
  s.ctx->barrier();
  kill_point("save.staged");
  s.optimizer->save(staging);
  kill_point("save.shard_written");
  s.ctx->barrier();
  return staging;
}

// The distributed context for the run's device, ZeRO stage and timeout.
std::shared_ptr<dist::Context> make_context(const TrainSection& t, const dist::DistEnv& env,
                                            const torch::Device& device) {
  dist::DistOptions dopt;
  dopt.timeout = std::chrono::milliseconds(static_cast<int64_t>(t.dist_timeout_s * 1000));
  dopt.zero_stage = static_cast<int>(t.zero);
  if (t.offload_optimizer) dopt.shard_device = torch::Device(torch::kCPU);
  return dist::Context::create(env, device, dopt);
}

// Parameter groups by role (decay on backbone matrices only; the head's lr scale) and the
// optimizer over them; it reads each group's lr ratio once, so the groups start at the
// post-probe lrs.
void make_optimizer(Trainer::State& s) {
  for (auto& p : s.setup.model->parameters())
    if (p.requires_grad()) s.params.push_back(p);  // a LoRA model's base is frozen
  s.ctx->attach_gradients(s.params);
  ParamGroups groups = build_param_groups(*s.setup.model, s.cfg.train);
  s.group_roles = groups.roles;
  auto adamw = std::make_unique<torch::optim::AdamW>(std::move(groups.groups),
                                                     torch::optim::AdamWOptions(s.cfg.train.lr));
  apply_group_lrs(*adamw, s.group_roles, s.cfg.train, s.cfg.train.lr, s.cfg.train.probe_steps);
  s.optimizer = make_train_optimizer(s.cfg.train, std::move(adamw), s.ctx, s.params);
}

const char* attention_name(AttentionImpl impl) {
  switch (impl) {
    case AttentionImpl::Varlen:
      return "varlen";
    case AttentionImpl::Blocks:
      return "blocks";
    case AttentionImpl::Math:
      return "math";
    case AttentionImpl::Auto:
      break;
  }
  return "auto";
}

// train.attention resolved once for the run by the model's own rule (auto: varlen flash on CUDA
// when usable, per-sequence blocks on the CPU, else the dense mask), set on the model and
// recorded in the run's config.json ("runtime": {"attention": ...}).
void choose_run_attention(Trainer::State& s) {
  const auto requested = s.cfg.train.attention == AttentionPath::Math     ? AttentionImpl::Math
                         : s.cfg.train.attention == AttentionPath::Varlen ? AttentionImpl::Varlen
                                                                          : AttentionImpl::Auto;
  const auto dtype = s.cfg.train.precision == Precision::Bf16 ? torch::kBFloat16 : torch::kFloat32;
  try {
    s.attention = s.setup.model->choose_attention(requested, s.setup.device, dtype);
  } catch (const Error& e) {
    throw Error(std::string("train.attention = varlen needs CUDA, bf16 (train.precision) and the "
                            "flash kernels; use auto or math (") +
                e.what() + ")");
  }
  s.setup.model->set_attention_impl(s.attention);
  s.cfg.runtime.attention = attention_name(s.attention);
  s.setup.resolved_config["runtime"]["attention"] = s.cfg.runtime.attention;
}

// Rank 0: prints the resolved config and the memory plan, writes config.json and opens
// metrics.jsonl (cut back to the resumed step) and the TensorBoard event file.
void open_run_dir(Trainer::State& s) {
  if (!s.ctx->is_main()) return;
  spdlog::info("resolved config:\n{}", s.setup.resolved_config.dump(2));
  spdlog::info("{}", s.plan.format());
  fs::create_directories(s.cfg.run.output_dir);
  remove_stale_temporaries(s.cfg.run.output_dir);  // left by a save that was killed
  write_json_file_atomic((fs::path(s.cfg.run.output_dir) / "config.json").string(),
                         s.setup.resolved_config);
  fs::path mpath = fs::path(s.cfg.run.output_dir) / "metrics.jsonl";
  truncate_metrics_after(mpath.string(), s.state.step);
  s.metrics.open(mpath, std::ios::app);
  if (s.cfg.run.tensorboard)  // its first step purges what earlier files logged from there on
    s.events =
        std::make_unique<EventWriter>((fs::path(s.cfg.run.output_dir) / "tensorboard").string(),
                                      s.state.step + 1, s.cfg.run.tensorboard_flush_secs);
}

}  // namespace

Trainer::Trainer(TrainConfig config, bool resume, SetupFn make_setup)
    : s_(std::make_unique<State>()) {
  auto& s = *s_;
  s.cfg = std::move(config);
  if (s.cfg.train.threads > 0) torch::set_num_threads(static_cast<int>(s.cfg.train.threads));

  dist::DistEnv env = dist::DistEnv::from_environment();
  if (env.restart_count > 0)
    resume = true;  // a launcher restart (polar-run, torchrun, Slurm requeue)
  torch::Device device = resolve_device(s.cfg.train.device, env.local_rank);
  s.ctx = make_context(s.cfg.train, env, device);
  POLAR_CHECK(s.cfg.train.batch_groups >= s.ctx->world_size(), "train.batch_groups (",
              s.cfg.train.batch_groups, ") must be at least the world size (", s.ctx->world_size(),
              ")");

  std::optional<std::string> resume_from;
  if (resume) {
    resume_from = find_latest_checkpoint(s.cfg.run.output_dir);
    if (!resume_from)
      spdlog::warn("resume: no checkpoint under {}; starting from scratch", s.cfg.run.output_dir);
  }
  const int64_t baseline_rss =
      current_rss_bytes();  // before the model and data: the plan's runtime
  s.setup =
      make_setup ? make_setup(s.cfg, device, resume_from) : prepare_run(s.cfg, device, resume_from);
  s.plan = plan_memory(s.setup.model->config(), s.cfg, s.ctx->world_size(), device.is_cuda(),
                       baseline_rss);
  s.ctx->broadcast_module(*s.setup.model);

  if (s.cfg.train.param_dtype == Precision::Bf16) {
    POLAR_CHECK(device.is_cuda(), "train.param_dtype bf16 needs a CUDA device (train.device is ",
                s.cfg.train.device, ", resolved to ", device.str(), ")");
    const int64_t n = s.setup.model->set_matrix_dtype(torch::kBFloat16);
    spdlog::info("weights: {} matrices in bf16 on the device; fp32 master weights in the optimizer",
                 n);
  }
  make_optimizer(s);
  s.setup.model->set_activation_checkpointing_every(activation_checkpoint_interval(s.cfg.train));
  s.stream = std::make_unique<GroupStream>(s.setup.train_data.size(),
                                           static_cast<uint64_t>(s.cfg.train.seed));
  s.use_fused = s.cfg.train.fused_kernels && device.is_cuda() && kernels::cuda_kernels_available();
  s.setup.model->set_fused_head(s.use_fused);
  choose_run_attention(s);

  if (resume_from) {
    s.optimizer->load(*resume_from);
    s.state = load_trainer_state(*resume_from);
    spdlog::info("resumed from {} at step {}", *resume_from, s.state.step);
  }
  s.state.world_size = s.ctx->world_size();
  open_run_dir(s);
}

Trainer::~Trainer() = default;

StepStats Trainer::train_step(int64_t step) {
  auto& s = *s_;
  auto t0 = Clock::now();
  const std::vector<GroupRef> groups = rank_groups(s, step, s.ctx->rank());
  const LossDivisors divisors{static_cast<double>(global_pair_count(s, step)),
                              static_cast<double>(s.cfg.train.batch_groups)};
  GradientStep sync(*s.optimizer, *s.ctx);
  torch::Tensor stats = zero_stats(s.setup.device);
  int64_t tokens = 0;
  for_each_micro_batch(s.setup.model, groups, micro_batch_options(s.cfg, s.setup.tokenizer),
                       [&](const MicroBatch& mb) {
                         const PairLoss out =
                             compute_loss(mb.rewards, mb.batch, divisors, s.cfg.loss, s.use_fused);
                         sync.before_backward(mb.last());
                         out.loss.backward();
                         stats += out.stats;
                         tokens += mb.batch.n_tokens;
                       });
  sync.finish(s.cfg.train.zero == 2 ? max_micro_steps(s, step) : 1);
  const PairCounts counts = read_pair_counts(stats);  // the step's one read of its statistics

  double clip =
      s.cfg.train.grad_clip > 0 ? s.cfg.train.grad_clip : std::numeric_limits<double>::infinity();
  double grad_norm = s.optimizer->clip_grad_norm(clip);
  StepTotals totals{counts.loss_sum, static_cast<double>(counts.n_correct),
                    static_cast<double>(counts.n_ties), static_cast<double>(tokens),
                    g_stop_signal.load() != 0};
  totals.all_reduce(*s.ctx);

  StepStats st;
  st.pairs = static_cast<int64_t>(divisors.pairs);
  st.loss = totals.loss_sum / loss_divisor(s.cfg.loss, divisors);
  st.accuracy = totals.correct / divisors.pairs;
  st.tokens = static_cast<int64_t>(totals.tokens);
  st.grad_norm = grad_norm;
  st.lr = learning_rate_at(s.cfg.train, step);
  st.skipped = !std::isfinite(st.loss) || !std::isfinite(grad_norm);
  if (!st.skipped) s.optimizer->step(st.lr, probe_group_scales(s.group_roles, s.cfg.train, step));
  if (totals.stop_requested && g_stop_signal.load() == 0)
    g_stop_signal.store(SIGTERM);  // a peer was signalled
  st.comm_exposed_seconds = s.ctx->last_exposed_comm_seconds();
  st.comm_total_seconds = s.ctx->last_total_comm_seconds();
  st.step_seconds = seconds_since(t0);
  return st;
}

EvalStats Trainer::evaluate() {
  auto& s = *s_;
  EvalStats es;
  if (!s.setup.eval_data) return es;
  const auto& data = *s.setup.eval_data;
  // Groups are stored sorted by prompt, so a prefix of the split would be a biased sample.
  const std::vector<int64_t> picked =
      sample_indices(data.size(), s.cfg.eval.max_groups, static_cast<uint64_t>(s.cfg.train.seed));
  std::vector<GroupRef> groups;
  for (size_t i = static_cast<size_t>(s.ctx->rank()); i < picked.size();
       i += static_cast<size_t>(s.ctx->world_size()))
    groups.push_back(data.group(picked[i]));
  torch::NoGradGuard no_grad;
  s.setup.model->eval();
  torch::Tensor stats = zero_stats(s.setup.device);
  int64_t pairs = 0;
  for_each_micro_batch(s.setup.model, groups, micro_batch_options(s.cfg, s.setup.tokenizer),
                       [&](const MicroBatch& mb) {
                         // Undivided sums: divided below by the split's pairs or groups.
                         const PairLoss out =
                             compute_loss(mb.rewards, mb.batch, LossDivisors{}, s.cfg.loss, false);
                         stats += out.stats;
                         pairs += out.n_pairs;
                       });
  const PairCounts counts = read_pair_counts(stats);
  s.setup.model->train();
  std::vector<double> reduced{counts.loss_sum, static_cast<double>(counts.n_correct),
                              static_cast<double>(pairs), static_cast<double>(groups.size())};
  s.ctx->all_reduce_sum(reduced);
  es.pairs = static_cast<int64_t>(reduced[2]);
  if (es.pairs > 0) {
    es.loss = reduced[0] / loss_divisor(s.cfg.loss, LossDivisors{reduced[2], reduced[3]});
    es.accuracy = reduced[1] / reduced[2];
  }
  return es;
}

// ---- the run: the step loop, with evaluation and checkpointing around it --------------------

namespace {

// What the loop keeps across the steps of this invocation.
struct RunProgress {
  Clock::time_point started = Clock::now();
  int64_t start_step = 0;
  double tokens_seen = 0;
  int64_t finite_steps = 0;
};

// Saves run.output_dir/`name` (collective): every rank stages its optimizer state, rank 0 writes
// the model, tokenizer, config and trainer state and renames it into place, then prunes old
// checkpoint-<N> directories.
void save_run_checkpoint(Trainer::State& s, const std::string& name, bool with_optimizer) {
  const std::string dir = (fs::path(s.cfg.run.output_dir) / name).string();
  const std::string staging = with_optimizer ? stage_optimizer_state(s, dir) : "";
  if (s.ctx->is_main()) {
    Activity saving("saving " + name);
    TrainerState st = s.state;
    CheckpointContents c{&s.setup.model, &s.setup.tokenizer, &s.setup.resolved_config, nullptr, &st,
                         staging};
    save_checkpoint(dir, c);
    if (with_optimizer) prune_checkpoints(s.cfg.run.output_dir, s.cfg.run.keep_last);
    spdlog::info("saved {}", dir);
  }
  kill_point("save.committed");
  s.ctx->barrier();  // nobody runs ahead of a checkpoint that a restart would resume from
}

// After a step: checkpoint when asked by a signal, run.stop_after_steps or run.checkpoint_every.
// Returns the exit code when the run stops here.
std::optional<int> checkpoint_after_step(Trainer::State& s, const RunProgress& progress,
                                         bool last) {
  const auto& run = s.cfg.run;
  const int64_t step = s.state.step;
  if (int sig = g_stop_signal.load(); sig != 0) {
    save_run_checkpoint(s, checkpoint_dir_name(step), true);
    if (s.ctx->is_main())
      spdlog::warn("stopped by signal {} after step {}; continue with --resume", sig, step);
    return 128 + sig;
  }
  if (!last && run.stop_after_steps > 0 && step - progress.start_step >= run.stop_after_steps) {
    save_run_checkpoint(s, checkpoint_dir_name(step), true);
    if (s.ctx->is_main())
      spdlog::info("stopping after {} steps (run.stop_after_steps); continue with --resume",
                   run.stop_after_steps);
    return 0;
  }
  if (!last && run.checkpoint_every > 0 && step % run.checkpoint_every == 0)
    save_run_checkpoint(s, checkpoint_dir_name(step), true);
  return std::nullopt;
}

// Counts a skipped (non-finite) step; aborts after train.max_bad_steps in a row.
void count_bad_steps(Trainer::State& s, const StepStats& st, int64_t step) {
  if (!st.skipped) {
    s.state.consecutive_bad_steps = 0;
    return;
  }
  s.state.consecutive_bad_steps++;
  if (s.ctx->is_main())
    spdlog::warn("step {}: non-finite loss ({}) or gradient norm ({}); step skipped", step + 1,
                 st.loss, st.grad_norm);
  POLAR_CHECK(s.state.consecutive_bad_steps < s.cfg.train.max_bad_steps,
              "aborting: ", s.state.consecutive_bad_steps,
              " consecutive non-finite steps (train.max_bad_steps = ", s.cfg.train.max_bad_steps,
              "); lower train.lr or check the data");
}

json step_record(const Trainer::State& s, int64_t step, const StepStats& st) {
  const double peak =
      static_cast<double>(measured_peak_bytes(s.setup.device.is_cuda(), s.setup.device.index()));
  return json{{"step", step},
              {"loss", st.loss},
              {"accuracy", st.accuracy},
              {"lr", st.lr},
              {"grad_norm", st.grad_norm},
              {"pairs", st.pairs},
              {"tokens", st.tokens},
              {"step_s", st.step_seconds},
              {"comm_exposed_s", st.comm_exposed_seconds},
              {"comm_total_s", st.comm_total_seconds},
              {"tokens_per_s",
               st.step_seconds > 0 ? static_cast<double>(st.tokens) / st.step_seconds : 0.0},
              {"peak_memory_mib", peak / 1048576.0},
              {"skipped", st.skipped}};
}

// Rank 0: appends the step's record to metrics.jsonl and the TensorBoard events, and prints
// progress every run.log_every.
void log_step(Trainer::State& s, const json& rec, const StepStats& st, const RunProgress& progress,
              bool last) {
  if (!s.ctx->is_main()) return;
  s.metrics << rec.dump() << "\n";
  s.metrics.flush();
  if (s.events) s.events->add_metrics(rec);
  const int64_t step = s.state.step;
  if (step % s.cfg.run.log_every != 0 && !last) return;
  const double elapsed = seconds_since(progress.started);
  const double per_step = elapsed / static_cast<double>(step - progress.start_step);
  spdlog::info("step {}/{} | loss {:.4f} | acc {:.3f} | lr {:.2e} | {:.0f} tok/s | eta {}", step,
               s.cfg.train.steps, st.loss, st.accuracy, st.lr, progress.tokens_seen / elapsed,
               format_duration(per_step * static_cast<double>(s.cfg.train.steps - step)));
}

}  // namespace

void Trainer::evaluate_into(json& rec, bool last) {
  auto& s = *s_;
  const int64_t step = s.state.step;
  if (!last && (s.cfg.eval.every == 0 || step % s.cfg.eval.every != 0)) return;
  const EvalStats es = evaluate();
  if (es.pairs == 0) return;
  rec["eval_loss"] = es.loss;
  rec["eval_accuracy"] = es.accuracy;
  if (s.ctx->is_main())
    spdlog::info("eval @ step {}: loss {:.4f} accuracy {:.4f} ({} pairs)", step, es.loss,
                 es.accuracy, es.pairs);
}

int Trainer::run() {
  auto& s = *s_;
  const auto& cfg = s.cfg;
  if (int sig = g_stop_signal.load(); sig != 0)
    return 128 + sig;  // signalled during set-up: nothing to save
  if (s.ctx->is_main())
    spdlog::info(
        "training {}: {} steps x {} groups, {} train groups, {} eval groups, world size {}, "
        "device {}, attention {}",
        choice_name(cfg.stage), cfg.train.steps, cfg.train.batch_groups, s.setup.train_data.size(),
        s.setup.eval_data ? s.setup.eval_data->size() : 0, s.ctx->world_size(),
        s.setup.device.str(), attention_name(s.attention));
  RunProgress progress;
  progress.start_step = s.state.step;
  while (s.state.step < cfg.train.steps) {
    const int64_t step = s.state.step;
    Activity activity(fmt::format("training step {}", step + 1));
    const StepStats st = train_step(step);
    progress.finite_steps += st.skipped ? 0 : 1;
    progress.tokens_seen += static_cast<double>(st.tokens);
    s.state.step = step + 1;
    s.state.groups_consumed = s.state.step * cfg.train.batch_groups;
    count_bad_steps(s, st, step);
    const bool last = s.state.step == cfg.train.steps;
    json rec = step_record(s, s.state.step, st);
    evaluate_into(rec, last);
    log_step(s, rec, st, progress, last);
    if (auto code = checkpoint_after_step(s, progress, last)) return *code;
  }
  // A run that never took a step must not end as a trained model.
  POLAR_CHECK(progress.finite_steps > 0 || s.state.step == progress.start_step, "all ",
              s.state.step - progress.start_step, " steps of this run were non-finite and skipped;",
              " no final/ written (lower train.lr, or check the data and the initial weights)");
  save_run_checkpoint(s, checkpoint_dir_name(s.state.step), true);
  save_run_checkpoint(s, "final", false);
  log_memory(s);
  return 0;
}

}  // namespace polar
