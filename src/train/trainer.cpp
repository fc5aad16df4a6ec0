#include "polar/train/trainer.h"

#include <torch/torch.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/data/batch.h"
#include "polar/dist/dist.h"
#include "polar/kernels/fused.h"
#include "polar/loss/polar_loss.h"
#include "polar/model/reward_model.h"
#include "polar/train/checkpoint.h"
#include "polar/train/data_order.h"
#include "polar/train/param_groups.h"

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

struct Trainer::State {
  TrainConfig cfg;
  RunSetup setup;  // model, tokenizer, datasets, device
  std::shared_ptr<dist::Context> ctx;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::vector<torch::Tensor> params;
  std::vector<ParamRole> group_roles;  // the role of each optimizer param group
  std::unique_ptr<GroupStream> stream;
  TrainerState state;
  std::ofstream metrics;
  bool use_fused = false;
};

Trainer::Trainer(TrainConfig config, bool resume, SetupFn make_setup) : s_(std::make_unique<State>()) {
  auto& s = *s_;
  s.cfg = std::move(config);
  if (s.cfg.train.threads > 0) torch::set_num_threads(static_cast<int>(s.cfg.train.threads));

  dist::DistEnv env = dist::DistEnv::from_environment();
  if (env.restart_count > 0) resume = true;  // a launcher restart (polar-run, torchrun, Slurm requeue)
  torch::Device device = resolve_device(s.cfg.train.device, env.local_rank);
  dist::DistOptions dopt;
  dopt.timeout = std::chrono::milliseconds(static_cast<int64_t>(s.cfg.train.dist_timeout_s * 1000));
  s.ctx = dist::Context::create(env, device, dopt);
  POLAR_CHECK(s.cfg.train.batch_groups >= s.ctx->world_size(), "train.batch_groups (", s.cfg.train.batch_groups,
              ") must be at least the world size (", s.ctx->world_size(), ")");

  std::optional<std::string> resume_from;
  if (resume) {
    resume_from = find_latest_checkpoint(s.cfg.run.output_dir);
    if (!resume_from) spdlog::warn("resume: no checkpoint under {}; starting from scratch", s.cfg.run.output_dir);
  }
  s.setup = make_setup ? make_setup(s.cfg, device, resume_from) : prepare_run(s.cfg, device, resume_from);
  s.ctx->broadcast_module(*s.setup.model);

  for (auto& p : s.setup.model->parameters()) s.params.push_back(p);
  s.ctx->attach_gradients(s.params);
  ParamGroups groups = build_param_groups(*s.setup.model, s.cfg.train);
  s.group_roles = groups.roles;
  s.optimizer = std::make_unique<torch::optim::AdamW>(std::move(groups.groups),
                                                      torch::optim::AdamWOptions(s.cfg.train.lr));
  s.stream = std::make_unique<GroupStream>(s.setup.train_data.size(), static_cast<uint64_t>(s.cfg.train.seed));
  s.use_fused = s.cfg.train.fused_kernels && device.is_cuda() && kernels::cuda_kernels_available();
  s.setup.model->set_fused_head(s.use_fused);
  {
    const auto& shape = s.setup.model->config();
    auto probe = torch::empty({1, shape.num_heads, shape.head_dim()},
                              torch::TensorOptions().device(device).dtype(s.cfg.train.precision == "bf16"
                                                                              ? torch::kBFloat16
                                                                              : torch::kFloat32));
    bool varlen_ok = device.is_cuda() && kernels::varlen_attention_available(probe);
    POLAR_CHECK(s.cfg.train.attention != "varlen" || varlen_ok, "train.attention = varlen needs CUDA, bf16 ",
                "(train.precision) and the flash kernels; use auto or math");
    if (s.cfg.train.attention != "math" && varlen_ok) s.setup.model->set_attention_impl(AttentionImpl::Varlen);
  }

  if (resume_from) {
    load_optimizer_state(*s.optimizer, *resume_from);
    s.state = load_trainer_state(*resume_from);
    spdlog::info("resumed from {} at step {}", *resume_from, s.state.step);
  }
  s.state.world_size = s.ctx->world_size();
  if (s.ctx->is_main()) {
    spdlog::info("resolved config:\n{}", s.setup.resolved_config.dump(2));
    fs::create_directories(s.cfg.run.output_dir);
    write_json_file_atomic((fs::path(s.cfg.run.output_dir) / "config.json").string(), s.setup.resolved_config);
    fs::path mpath = fs::path(s.cfg.run.output_dir) / "metrics.jsonl";
    truncate_metrics_after(mpath.string(), s.state.step);
    s.metrics.open(mpath, std::ios::app);
  }
}

Trainer::~Trainer() = default;

StepStats Trainer::train_step(int64_t step) {
  auto& s = *s_;
  auto t0 = Clock::now();
  const auto& data = s.setup.train_data;
  std::vector<int64_t> ids = s.stream->step_groups(step, s.cfg.train.batch_groups, s.ctx->rank(), s.ctx->world_size());
  std::vector<GroupRef> groups;
  for (int64_t i : ids) groups.push_back(data.group(i));
  // The loss divisor is the step's global pair count, known without communication.
  int64_t global_pairs = 0;
  for (int64_t k = 0; k < s.cfg.train.batch_groups; ++k)
    global_pairs += static_cast<int64_t>(data.group(s.stream->at(step * s.cfg.train.batch_groups + k)).candidates.size()) - 1;

  s.optimizer->zero_grad(true);
  auto micro = split_micro_batches(groups, s.cfg.data.micro_batch_tokens);
  PackOptions pack{s.cfg.data.row_tokens, std::max(s.setup.tokenizer.special().pad, 0)};
  double loss_sum = 0, correct = 0, ties = 0, tokens = 0;
  for (size_t m = 0; m < micro.size(); ++m) {
    std::vector<GroupRef> slice(groups.begin() + micro[m].first, groups.begin() + micro[m].second);
    PackedBatch batch = to_device(pack_groups(slice, pack), s.setup.device);
    s.ctx->begin_micro_step(m + 1 == micro.size());  // all-reduce only on the last micro-step
    PairLoss out;
    {
      auto autocast = autocast_guard(s.cfg.train.precision, s.setup.device);
      torch::Tensor rewards = s.setup.model->forward(batch);  // (N)
      out = compute_pair_loss(rewards.to(torch::kFloat32), batch, static_cast<double>(global_pairs), s.cfg.loss,
                              s.use_fused);
    }
    out.loss.backward();
    loss_sum += out.loss_sum;
    correct += static_cast<double>(out.n_correct);
    ties += static_cast<double>(out.n_ties);
    tokens += static_cast<double>(batch.n_tokens);
  }
  s.ctx->finish_step();

  double clip = s.cfg.train.grad_clip > 0 ? s.cfg.train.grad_clip : std::numeric_limits<double>::infinity();
  double grad_norm = torch::nn::utils::clip_grad_norm_(s.params, clip);
  std::vector<double> reduced{loss_sum, correct, ties, tokens, static_cast<double>(g_stop_signal.load() != 0)};
  s.ctx->all_reduce_sum(reduced);

  StepStats st;
  st.pairs = global_pairs;
  st.loss = reduced[0] / static_cast<double>(global_pairs);
  st.accuracy = reduced[1] / static_cast<double>(global_pairs);
  st.tokens = static_cast<int64_t>(reduced[3]);
  st.grad_norm = grad_norm;
  st.lr = learning_rate_at(s.cfg.train, step);
  st.skipped = !std::isfinite(st.loss) || !std::isfinite(grad_norm);
  if (!st.skipped) {
    apply_group_lrs(*s.optimizer, s.group_roles, s.cfg.train, st.lr, step);
    s.optimizer->step();
  }
  if (reduced[4] > 0 && g_stop_signal.load() == 0) g_stop_signal.store(SIGTERM);  // a peer was signalled
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
  int64_t n = data.size();
  if (s.cfg.eval.max_groups > 0) n = std::min(n, s.cfg.eval.max_groups);
  std::vector<GroupRef> groups;
  for (int64_t i = s.ctx->rank(); i < n; i += s.ctx->world_size()) groups.push_back(data.group(i));
  torch::NoGradGuard no_grad;
  s.setup.model->eval();
  double loss_sum = 0, correct = 0, pairs = 0;
  PackOptions pack{s.cfg.data.row_tokens, std::max(s.setup.tokenizer.special().pad, 0)};
  for (auto [b, e] : split_micro_batches(groups, s.cfg.data.micro_batch_tokens)) {
    std::vector<GroupRef> slice(groups.begin() + b, groups.begin() + e);
    PackedBatch batch = to_device(pack_groups(slice, pack), s.setup.device);
    auto autocast = autocast_guard(s.cfg.train.precision, s.setup.device);
    torch::Tensor rewards = s.setup.model->forward(batch).to(torch::kFloat32);
    PairLoss out = compute_pair_loss(rewards, batch, 1.0, s.cfg.loss, false);
    loss_sum += out.loss_sum;
    correct += static_cast<double>(out.n_correct);
    pairs += static_cast<double>(out.n_pairs);
  }
  s.setup.model->train();
  std::vector<double> reduced{loss_sum, correct, pairs};
  s.ctx->all_reduce_sum(reduced);
  es.pairs = static_cast<int64_t>(reduced[2]);
  if (es.pairs > 0) {
    es.loss = reduced[0] / reduced[2];
    es.accuracy = reduced[1] / reduced[2];
  }
  return es;
}

int Trainer::run() {
  auto& s = *s_;
  const auto& cfg = s.cfg;
  const bool main = s.ctx->is_main();
  auto save = [&](const std::string& name, bool with_optimizer) {
    if (main) {
      TrainerState st = s.state;
      CheckpointContents c{&s.setup.model, &s.setup.tokenizer, &s.setup.resolved_config,
                           with_optimizer ? s.optimizer.get() : nullptr, &st};
      std::string dir = (fs::path(cfg.run.output_dir) / name).string();
      save_checkpoint(dir, c);
      if (name.rfind("checkpoint-", 0) == 0) prune_checkpoints(cfg.run.output_dir, cfg.run.keep_last);
      spdlog::info("saved {}", dir);
    }
    s.ctx->barrier();  // nobody runs ahead of a checkpoint that a restart would resume from
  };
  if (main) {
    spdlog::info("training {}: {} steps x {} groups, {} train groups, {} eval groups, world size {}, device {}",
                 cfg.stage, cfg.train.steps, cfg.train.batch_groups, s.setup.train_data.size(),
                 s.setup.eval_data ? s.setup.eval_data->size() : 0, s.ctx->world_size(), s.setup.device.str());
  }
  auto t_start = Clock::now();
  int64_t start_step = s.state.step;
  double tokens_seen = 0;
  while (s.state.step < cfg.train.steps) {
    int64_t step = s.state.step;
    StepStats st = train_step(step);
    s.state.step = step + 1;
    s.state.groups_consumed = s.state.step * cfg.train.batch_groups;
    tokens_seen += static_cast<double>(st.tokens);
    if (st.skipped) {
      s.state.consecutive_bad_steps++;
      if (main) spdlog::warn("step {}: non-finite loss ({}) or gradient norm ({}); step skipped", step + 1, st.loss, st.grad_norm);
      POLAR_CHECK(s.state.consecutive_bad_steps < cfg.train.max_bad_steps, "aborting: ",
                  s.state.consecutive_bad_steps, " consecutive non-finite steps (train.max_bad_steps = ",
                  cfg.train.max_bad_steps, "); lower train.lr or check the data");
    } else {
      s.state.consecutive_bad_steps = 0;
    }
    json rec{{"step", s.state.step}, {"loss", st.loss}, {"accuracy", st.accuracy}, {"lr", st.lr},
             {"grad_norm", st.grad_norm}, {"pairs", st.pairs}, {"tokens", st.tokens},
             {"step_s", st.step_seconds}, {"comm_exposed_s", st.comm_exposed_seconds},
             {"comm_total_s", st.comm_total_seconds}, {"skipped", st.skipped}};
    bool last = s.state.step == cfg.train.steps;
    if ((cfg.eval.every > 0 && s.state.step % cfg.eval.every == 0) || last) {
      EvalStats es = evaluate();
      if (es.pairs > 0) {
        rec["eval_loss"] = es.loss;
        rec["eval_accuracy"] = es.accuracy;
        if (main) spdlog::info("eval @ step {}: loss {:.4f} accuracy {:.4f} ({} pairs)", s.state.step, es.loss, es.accuracy, es.pairs);
      }
    }
    if (main) {
      s.metrics << rec.dump() << "\n";
      s.metrics.flush();
      if (s.state.step % cfg.run.log_every == 0 || last) {
        double elapsed = seconds_since(t_start);
        double per_step = elapsed / static_cast<double>(s.state.step - start_step);
        spdlog::info("step {}/{} | loss {:.4f} | acc {:.3f} | lr {:.2e} | {:.0f} tok/s | eta {}", s.state.step,
                     cfg.train.steps, st.loss, st.accuracy, st.lr, tokens_seen / elapsed,
                     format_duration(per_step * static_cast<double>(cfg.train.steps - s.state.step)));
      }
    }
    if (g_stop_signal.load() != 0) {
      int sig = g_stop_signal.load();
      save(fmt::format("checkpoint-{}", s.state.step), true);
      if (main) spdlog::warn("stopped by signal {} after step {}; continue with --resume", sig, s.state.step);
      return 128 + sig;
    }
    if (!last && cfg.run.stop_after_steps > 0 && s.state.step - start_step >= cfg.run.stop_after_steps) {
      save(fmt::format("checkpoint-{}", s.state.step), true);
      if (main) spdlog::info("stopping after {} steps (run.stop_after_steps); continue with --resume", cfg.run.stop_after_steps);
      return 0;
    }
    if (!last && cfg.run.checkpoint_every > 0 && s.state.step % cfg.run.checkpoint_every == 0)
      save(fmt::format("checkpoint-{}", s.state.step), true);
  }
  save(fmt::format("checkpoint-{}", s.state.step), true);
  save("final", false);
  return 0;
}

}  // namespace polar
