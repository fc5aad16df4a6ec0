#include "polar/train/run_setup.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/lora_checkpoint.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/model/lora.h"
#include "polar/train/data_order.h"

namespace fs = std::filesystem;

namespace polar {

using nlohmann::json;

std::string resolve_split_dir(const std::string& path, const std::string& split) {
  if (fs::is_regular_file(fs::path(path) / "split.json")) return path;
  fs::path sub = fs::path(path) / split;
  POLAR_CHECK(fs::is_regular_file(sub / "split.json"), path,
              ": neither a split directory (split.json) nor a dataset", " directory with ", split,
              "/split.json (build one with `polar data`)");
  return sub.string();
}

namespace {

// The tokenizer a split was built with: DATASET/tokenizer next to DATASET/<split>, checked against
// the fingerprint in DATASET/manifest.json (a manifest written before fingerprints existed has
// none, and DATASET/tokenizer is taken as is). nullopt when the dataset has no tokenizer.
std::optional<Tokenizer> dataset_tokenizer(const std::string& split_dir) {
  const fs::path root = fs::path(split_dir).parent_path();
  const fs::path t = root / "tokenizer";
  if (!fs::is_regular_file(t / "tokenizer.model") && !fs::is_regular_file(t / "tokenizer.json"))
    return std::nullopt;
  Tokenizer tok = Tokenizer::load(t.string());
  const fs::path manifest = root / "manifest.json";
  if (fs::is_regular_file(manifest)) {
    const json j = read_json_file(manifest.string());
    const json* built_with = nullptr;
    if (j.is_object() && j.contains("settings") && j["settings"].is_object() &&
        j["settings"].contains("tokenizer") && j["settings"]["tokenizer"].is_object() &&
        j["settings"]["tokenizer"].contains("fingerprint"))
      built_with = &j["settings"]["tokenizer"];
    if (built_with != nullptr) {
      const json& stored = (*built_with)["fingerprint"];
      const auto field = [&](const char* key) {
        if (!built_with->contains(key)) return std::string("?");
        const json& v = (*built_with)[key];
        return v.is_string() ? v.get<std::string>() : v.dump();
      };
      POLAR_CHECK(stored.is_string() && stored.get<std::string>() == tok.fingerprint(),
                  manifest.string(), ": settings.tokenizer.fingerprint ", stored.dump(),
                  " (the data was built with ", field("path"), ", ", field("vocab_size"),
                  " pieces) is not the fingerprint of ", t.string(), " (", tok.fingerprint(), ", ",
                  tok.vocab_size(),
                  " pieces); the dataset's tokenizer/ was replaced: rebuild the data or put the "
                  "tokenizer it was built with back");
    }
  }
  return tok;
}

// Refuses data tokenised with another tokenizer than the model's.
void check_data_tokenizer(const Tokenizer& model_tok, const std::string& model_what,
                          const std::string& split_dir) {
  if (auto data_tok = dataset_tokenizer(split_dir)) {
    require_same_tokenizer(model_tok, model_what, *data_tok, "the data " + split_dir);
  } else {
    spdlog::warn("{}: no tokenizer/ beside the data, so it cannot be checked against the model's",
                 split_dir);
  }
}

// train.epochs -> train.steps; warns when the run reads its data more than once.
void resolve_length(TrainSection& t, int64_t train_groups) {
  if (t.epochs > 0) {
    t.steps = steps_for_epochs(t.epochs, train_groups, t.batch_groups);
    spdlog::info("train.steps = {} from train.epochs = {} ({} training groups, {} per step)",
                 t.steps, t.epochs, train_groups, t.batch_groups);
  }
  const double epochs = static_cast<double>(t.steps) * static_cast<double>(t.batch_groups) /
                        static_cast<double>(std::max<int64_t>(train_groups, 1));
  if (epochs > 1.0 + 1e-9) {
    spdlog::warn(
        "{} steps x {} groups = {:.2f} epochs of the {} training groups: groups repeat. POLAR "
        "trains one "
        "epoch (more epochs of pre-training overfit); set train.epochs = 1 or fewer train.steps",
        t.steps, t.batch_groups, epochs, train_groups);
  }
}

// Opens data.train and data.eval (default: the train split's sibling eval/ when it has groups)
// and records the resolved split dirs in the config.
void open_run_data(TrainConfig& cfg, RunSetup& r) {
  POLAR_CHECK(!cfg.data.train.empty(),
              "data.train is not set (a dataset dir built by `polar data`)");
  const std::string train_dir = resolve_split_dir(cfg.data.train, "train");
  r.train_data = GroupDataset::open(train_dir);
  std::string eval_dir = cfg.data.eval;
  if (eval_dir.empty()) {
    fs::path sibling = fs::path(train_dir).parent_path() / "eval";
    if (fs::is_regular_file(sibling / "split.json")) eval_dir = sibling.string();
  } else {
    eval_dir = resolve_split_dir(eval_dir, "eval");
  }
  if (!eval_dir.empty()) {
    auto ev = GroupDataset::open(eval_dir);
    if (ev.size() > 0) r.eval_data = ev;
  }
  cfg.data.train = train_dir;
  cfg.data.eval = r.eval_data ? eval_dir : "";
  resolve_length(cfg.train, r.train_data.size());
}

// The run's tokenizer: model.tokenizer, else init_from's, else the data's; checked against
// init_from, the checkpoint resumed from and both splits.
void choose_run_tokenizer(const TrainConfig& cfg, const std::optional<LoadedModel>& init,
                          const std::optional<std::string>& resume_from, RunSetup& r) {
  const auto& m = cfg.model;
  std::string model_what = "the model";
  if (!m.tokenizer.empty()) {
    r.tokenizer = Tokenizer::load(m.tokenizer);
    model_what = "the model (model.tokenizer " + m.tokenizer + ")";
    if (init)
      require_same_tokenizer(init->tokenizer, "model.init_from " + m.init_from, r.tokenizer,
                             model_what);
  } else if (init) {
    r.tokenizer = init->tokenizer;
    model_what = "model.init_from " + m.init_from;
  } else {
    auto t = dataset_tokenizer(cfg.data.train);
    POLAR_CHECK(t.has_value(), cfg.data.train,
                ": no tokenizer next to the data; set model.tokenizer");
    r.tokenizer = *t;
  }
  if (resume_from) {
    require_same_tokenizer(load_checkpoint_tokenizer(*resume_from),
                           "the checkpoint " + *resume_from, r.tokenizer, model_what);
  }
  check_data_tokenizer(r.tokenizer, model_what, cfg.data.train);
  if (r.eval_data) check_data_tokenizer(r.tokenizer, model_what, cfg.data.eval);
}

// The model's shape: init_from's, shape_from's or the config's (vocab_size grown to the
// tokenizer's); refused when the machine cannot hold what training it needs.
ModelConfig resolve_run_shape(const ModelSection& m, const std::optional<LoadedModel>& init,
                              const Tokenizer& tokenizer) {
  ModelConfig shape;
  if (init) {
    shape = init->shape;
  } else if (!m.shape_from.empty()) {
    shape = load_model_shape(m.shape_from);
  } else {
    shape = m.shape;
    if (shape.vocab_size < tokenizer.vocab_size()) {
      shape.vocab_size = (tokenizer.vocab_size() + 63) / 64 * 64;  // multiple of 64 for matmuls
      spdlog::info("model.vocab_size set to {} from the tokenizer ({} pieces)", shape.vocab_size,
                   tokenizer.vocab_size());
    }
  }
  POLAR_CHECK(shape.vocab_size >= tokenizer.vocab_size(), "the model's vocab_size (",
              shape.vocab_size, ") is smaller than the tokenizer's (", tokenizer.vocab_size(), ")");
  if (m.lora.enabled()) {
    POLAR_CHECK(init.has_value(),
                "model.lora needs model.init_from: the base checkpoint whose "
                "weights stay frozen");
    check_model_memory(shape, 4.0, "LoRA training (the frozen weights)");
  } else {
    check_model_memory(shape, 16.0, "training (weights, gradients, two AdamW moments)");
  }
  return shape;
}

// Adds model.lora's adapters to the frozen base; on resume, checks the checkpoint was trained on
// the same base. On CUDA in bf16 the frozen matrices are held in bf16 (no fp32 copy anywhere).
void attach_lora(const TrainConfig& cfg, const torch::Device& device, const LoraBase& base,
                 const std::optional<std::string>& resume_from, RunSetup& r) {
  const auto& m = cfg.model;
  const uint64_t seed = m.init_seed ? m.init_seed : static_cast<uint64_t>(cfg.train.seed);
  const int64_t n = add_lora(*r.model, m.lora, seed);
  int64_t trainable = 0;
  for (const auto& p : r.model->parameters())
    if (p.requires_grad()) trainable += p.numel();
  spdlog::info("LoRA: rank {} alpha {} on {} layers; {} trainable parameters of {}", m.lora.rank,
               m.lora.alpha, n, trainable, m.shape.num_parameters() + trainable);
  if (resume_from) {
    const std::string where = (fs::path(*resume_from) / "config.json").string();
    const auto recorded = recorded_lora_base(read_json_file(where), where);
    POLAR_CHECK(recorded.has_value(), where,
                ": the checkpoint has no LoRA adapters but the config sets model.lora");
    check_lora_base(*recorded, m.init_from, base.fingerprint, where);
  }
  if (device.is_cuda() && cfg.train.precision == Precision::Bf16)
    cast_frozen_matrices(*r.model, torch::kBFloat16);
}

}  // namespace

RunSetup prepare_run(TrainConfig& cfg, const torch::Device& device,
                     const std::optional<std::string>& resume_from) {
  RunSetup r;
  r.device = device;
  open_run_data(cfg, r);
  const auto& m = cfg.model;
  std::optional<LoadedModel> init;
  if (!m.init_from.empty()) init = load_model(m.init_from, torch::kCPU);
  choose_run_tokenizer(cfg, init, resume_from, r);
  cfg.model.shape = resolve_run_shape(m, init, r.tokenizer);

  const uint64_t seed = m.init_seed ? m.init_seed : static_cast<uint64_t>(cfg.train.seed);
  std::optional<LoraBase> lora_base;
  if (init) {
    r.model = init->model;
    if (m.lora.enabled())  // the base as loaded, before its head is re-initialised
      lora_base = LoraBase{fs::absolute(m.init_from).lexically_normal().string(),
                           base_fingerprint(*r.model)};
    if (m.reset_head) r.model->reset_reward_head(seed);
  } else {
    r.model = RewardModel(cfg.model.shape);
    r.model->reset_parameters(seed);
  }
  // Every reward starts at 0: the first steps train the head on the features.
  if (m.zero_head) r.model->zero_reward_head();
  if (lora_base) attach_lora(cfg, device, *lora_base, resume_from, r);
  if (resume_from) load_weights(r.model, *resume_from);
  r.model->to(device);
  r.model->train();
  r.resolved_config = cfg.to_json();
  if (lora_base) r.resolved_config["lora_base"] = lora_base->to_json();
  return r;
}

void truncate_metrics_after(const std::string& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = json::parse(line, nullptr, false);
    bool later = j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
                 j["step"].get<int64_t>() > step;
    if (!later) kept += line + "\n";
  }
  write_file_atomic(path, kept);
}

}  // namespace polar
