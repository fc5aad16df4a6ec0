#include "polar/checkpoint/checkpoint.h"

#include <spdlog/spdlog.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <string_view>

#include "polar/checkpoint/hf.h"
#include "polar/checkpoint/lora_checkpoint.h"
#include "polar/checkpoint/verify.h"
#include "polar/common/activity.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/common/kill_point.h"
#include "polar/common/staged_dir.h"
#include "polar/config/train_config.h"
#include "polar/io/safetensors.h"
#include "polar/model/lora.h"

namespace fs = std::filesystem;

namespace polar {

using nlohmann::json;

namespace {

const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(const uint8_t* data, size_t n) {
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = static_cast<uint32_t>(data[i]) << 16;
    if (i + 1 < n) v |= static_cast<uint32_t>(data[i + 1]) << 8;
    if (i + 2 < n) v |= data[i + 2];
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += i + 1 < n ? kB64[(v >> 6) & 63] : '=';
    out += i + 2 < n ? kB64[v & 63] : '=';
  }
  return out;
}

std::vector<uint8_t> base64_decode(const std::string& s, const std::string& where) {
  std::vector<uint8_t> out;
  uint32_t v = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    const char* p = std::strchr(kB64, c);
    POLAR_CHECK(p != nullptr && c != '\0', where, ": invalid base64");
    v = (v << 6) | static_cast<uint32_t>(p - kB64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((v >> bits) & 0xFF));
    }
  }
  return out;
}

// Every parameter, or a LoRA model's trainable ones (adapters, head, trained norms).
std::vector<std::pair<std::string, torch::Tensor>> named_weights(RewardModel& model) {
  return checkpoint_parameters(*model);
}

}  // namespace

json TrainerState::to_json() const {
  return json{{"step", step},
              {"groups_consumed", groups_consumed},
              {"consecutive_bad_steps", consecutive_bad_steps},
              {"world_size", world_size},
              {"rng_state", rng_state_b64}};
}

TrainerState TrainerState::from_json(const json& j, const std::string& where) {
  TrainerState s;
  ConfigReader r(j, where);
  const Range count = closed(0, 1e15);
  r.get("step", s.step, count);
  r.get("groups_consumed", s.groups_consumed, count);
  r.get("consecutive_bad_steps", s.consecutive_bad_steps, count);
  r.get("world_size", s.world_size, closed(1, 1e6));
  r.get("rng_state", s.rng_state_b64);
  r.finish();
  return s;
}

void save_checkpoint(const std::string& dir, const CheckpointContents& c) {
  POLAR_CHECK(c.model && c.tokenizer && c.config,
              "save_checkpoint: model, tokenizer and config are required");
  StagedDir staged(dir, c.staging_dir);  // swapped into place by commit(); removed on an error
  const fs::path tmp(staged.path());
  io::save_safetensors((tmp / "model.safetensors").string(), named_weights(*c.model),
                       {{"format", "pt"}, {"producer", "polar"}});
  kill_point("save.model_written");
  json config = *c.config;
  config["tokenizer_fingerprint"] = c.tokenizer->fingerprint();  // what the weights' ids mean
  write_json_file_atomic((tmp / "config.json").string(), config);
  c.tokenizer->save((tmp / "tokenizer").string());
  if (c.optimizer) {
    torch::serialize::OutputArchive archive;
    c.optimizer->save(archive);
    archive.save_to((tmp / "optimizer.pt").string());
  }
  if (c.state) {
    TrainerState state = *c.state;
    auto gen = at::detail::getDefaultCPUGenerator();
    torch::Tensor gen_state;
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen_state = gen.get_state();  // opaque bytes
    }
    state.rng_state_b64 = base64_encode(gen_state.data_ptr<uint8_t>(), gen_state.numel());
    write_json_file_atomic((tmp / "trainer_state.json").string(), state.to_json());
  }
  kill_point("save.before_manifest");
  write_checkpoint_checksums(tmp.string());
  kill_point("save.before_commit");
  staged.commit();
}

namespace {

constexpr std::string_view kCheckpointPrefix = "checkpoint-";

// The step checkpoint directories of a run: (step, path), unsorted.
std::vector<std::pair<int64_t, fs::path>> step_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  for (const auto& e : fs::directory_iterator(run_dir)) {
    if (!e.is_directory()) continue;
    if (auto step = checkpoint_dir_step(e.path().filename().string()))
      found.emplace_back(*step, e.path());
  }
  return found;
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
  return std::string(kCheckpointPrefix) + std::to_string(step);
}

std::optional<int64_t> checkpoint_dir_step(const std::string& name) {
  if (name.rfind(kCheckpointPrefix, 0) != 0) return std::nullopt;
  const std::string digits = name.substr(kCheckpointPrefix.size());
  if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), ::isdigit))
    return std::nullopt;
  return std::stoll(digits);
}

std::optional<std::string> find_latest_checkpoint(const std::string& run_dir) {
  if (!fs::is_directory(run_dir)) return std::nullopt;
  int64_t best = -1;
  std::string best_dir;
  for (const auto& [step, path] : step_checkpoints(run_dir)) {
    if (!fs::exists(path / "trainer_state.json")) continue;  // incomplete
    if (step > best) {
      best = step;
      best_dir = path.string();
    }
  }
  if (best < 0) return std::nullopt;
  return best_dir;
}

void prune_checkpoints(const std::string& run_dir, int64_t keep_last) {
  remove_stale_temporaries(run_dir);
  std::vector<std::pair<int64_t, fs::path>> found = step_checkpoints(run_dir);
  std::sort(found.begin(), found.end());
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < found.size(); ++i)
    fs::remove_all(found[i].second);
}

ModelConfig load_model_shape(const std::string& path) {
  if (is_hf_directory(path)) return import_hf(path, torch::kCPU).shape;
  fs::path cfg = fs::path(path) / "config.json";
  POLAR_CHECK(fs::is_regular_file(cfg), path, ": not a checkpoint (no config.json)");
  json j = read_json_file(cfg.string());
  POLAR_CHECK(j.is_object() && j.contains("model") && j["model"].is_object(), cfg.string(),
              ": missing \"model\" object");
  // The sections `polar train` reads go through its validator; other top-level keys are the
  // checkpoint's provenance (e.g. "import" of a Hugging Face model).
  json sections = json::object();
  for (const char* key : {"stage", "model", "data", "loss", "train", "eval", "run"})
    if (j.contains(key)) sections[key] = j[key];
  return TrainConfig::from_json(sections, cfg.string()).model.shape;
}

void load_weights(RewardModel& model, const std::string& path, bool verify) {
  if (verify && fs::is_directory(path)) verify_checkpoint_checksums(path);
  auto weights = io::load_safetensors_any(path);
  torch::NoGradGuard no_grad;
  for (auto& [name, value] : checkpoint_parameters(*model)) {
    auto it = weights.find(name);
    POLAR_CHECK(it != weights.end(), path, ": missing tensor \"", name, "\"");
    POLAR_CHECK(it->second.sizes() == value.sizes(), path, ": tensor \"", name, "\" has shape ",
                it->second.sizes(), ", the model expects ", value.sizes());
    value.copy_(it->second.to(value.dtype()));
  }
  if (verify) check_weights_finite(model, path);
}

Tokenizer load_checkpoint_tokenizer(const std::string& dir) {
  const fs::path tok_dir = fs::path(dir) / "tokenizer";
  POLAR_CHECK(fs::is_directory(tok_dir), dir, ": not a checkpoint (no tokenizer/)");
  Tokenizer tok = Tokenizer::load(tok_dir.string());
  const fs::path cfg = fs::path(dir) / "config.json";
  if (!fs::is_regular_file(cfg)) return tok;
  const json j = read_json_file(cfg.string());
  // Checkpoints written before fingerprints existed have none: their tokenizer/ is taken as is.
  if (!j.is_object() || !j.contains("tokenizer_fingerprint")) return tok;
  const json& stored = j["tokenizer_fingerprint"];
  POLAR_CHECK(stored.is_string(), cfg.string(), ": tokenizer_fingerprint: expected a string");
  POLAR_CHECK(stored.get<std::string>() == tok.fingerprint(), cfg.string(),
              ": the weights were saved with tokenizer ", stored.get<std::string>(), " but ",
              tok_dir.string(), " is ", tok.fingerprint(),
              "; put back the checkpoint's own tokenizer/");
  return tok;
}

LoadedModel load_model(const std::string& path, const torch::Device& device, bool verify) {
  if (is_hf_directory(path)) {
    LoadedModel hf = import_hf(path, device);
    if (verify) check_weights_finite(hf.model, path);
    return hf;
  }
  Activity activity("loading checkpoint " + path);
  LoadedModel out;
  out.shape = load_model_shape(path);
  out.config = read_json_file((fs::path(path) / "config.json").string());
  if (recorded_lora_base(out.config, (fs::path(path) / "config.json").string()))
    return load_lora_model(path, out.config, device, verify);
  out.tokenizer = load_checkpoint_tokenizer(path);
  out.model = RewardModel(out.shape);
  load_weights(out.model, path, verify);
  out.model->to(device);
  return out;
}

void load_optimizer_state(torch::optim::Optimizer& optimizer, const std::string& checkpoint_dir) {
  fs::path p = fs::path(checkpoint_dir) / "optimizer.pt";
  POLAR_CHECK(fs::is_regular_file(p), checkpoint_dir, ": no optimizer.pt to resume from");
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(p.string());
    optimizer.load(archive);
  } catch (const c10::Error& e) {
    throw Error(p.string() + ": cannot load the optimizer state: " + e.what_without_backtrace());
  }
}

TrainerState load_trainer_state(const std::string& checkpoint_dir) {
  fs::path p = fs::path(checkpoint_dir) / "trainer_state.json";
  TrainerState s = TrainerState::from_json(read_json_file(p.string()), p.string());
  if (!s.rng_state_b64.empty()) {
    auto bytes = base64_decode(s.rng_state_b64, p.string());
    auto t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
    std::memcpy(t.data_ptr<uint8_t>(), bytes.data(), bytes.size());
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    try {
      gen.set_state(t);
    } catch (const c10::Error& e) {
      throw Error(p.string() + ": rng_state: not a CPU generator state (" +
                  e.what_without_backtrace() + ")");
    }
  }
  return s;
}

}  // namespace polar
