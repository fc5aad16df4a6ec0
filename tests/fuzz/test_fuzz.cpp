// Fuzz harness over the four untrusted inputs: preference JSONL, trajectory JSONL, training
// configs and checkpoints. Seeded and bounded (POLAR_FUZZ_CASES per kind in process,
// POLAR_FUZZ_CLI_CASES per kind through the `polar` binary; scripts/fuzz_campaign.sh runs a
// long campaign). Every case must end in a result that passes its checks or a polar::Error
// naming the input; through the binary also: no death by a signal, no hang, a non-zero exit for
// invalid input, and no output left behind by a failed command.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <mutex>

#include "common/tiny_checkpoint.h"
#include "common/tiny_data.h"
#include "fuzz/fuzz_util.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/common/error.h"
#include "polar/config/train_config.h"
#include "polar/data/records.h"

namespace fs = std::filesystem;
using nlohmann::json;
using polar::fuzz::Mutator;
using polar::fuzz::Tally;
using polar::testing::TempDir;

namespace {

using polar::fuzz::contains;
const uint64_t kSeed = polar::fuzz::seed();
const int64_t kCases = polar::fuzz::env_count("POLAR_FUZZ_CASES", 80);

std::vector<json> preference_lines() {
  return {
      json::parse(
          R"({"prompt":"What is 2+2?","reference":"4","chosen":"4","rejected":"5","category":"math"})"),
      json::parse(
          R"({"prompt":[{"role":"system","content":"Be brief."},{"role":"user","content":"Name a tree"}],)"
          R"("reference":"oak","chosen":[{"role":"assistant","content":"an oak"}],"rejected":"the sea"})"),
      json::parse(
          R"({"prompt":"how many sea","reference":"many","chosen":"many yes","rejected":"a number"})")};
}

std::vector<json> trajectory_lines() {
  std::vector<json> out;
  const char* answers[] = {"the sea", "a tree", "many numbers", "yes and no"};
  for (int p = 0; p < 3; ++p)
    for (int k = 0; k < 4; ++k)
      for (int r = 0; r < 2; ++r)
        out.push_back({{"prompt", "what is " + std::to_string(p)},
                       {"policy", "policy-" + std::to_string(k)},
                       {"response", std::string(answers[(k + r) % 4]) + " " + std::to_string(r)},
                       {"category", p % 2 ? "odd" : "even"}});
  out[0]["prompt"] = json::array({{{"role", "user"}, {"content", "what is 0"}}});
  return out;
}

// A JSONL file of `lines` with one to three of them mutated (sometimes the whole file's bytes).
std::string mutated_jsonl(Mutator& m, const std::vector<json>& lines) {
  std::string text;
  std::vector<bool> hit(lines.size(), false);
  for (uint64_t n = 1 + m.below(3); n > 0; --n) hit[m.below(lines.size())] = true;
  for (size_t i = 0; i < lines.size(); ++i)
    text += (hit[i] ? m.mutate(lines[i]) : lines[i].dump()) + "\n";
  if (m.chance(0.1)) text = m.mutate_bytes(text);
  if (m.chance(0.02)) text = m.chance(0.5) ? "" : "\n  \n";
  return text;
}

// Accepted records must be usable: non-empty valid UTF-8 texts and a category.
void check_texts(const std::vector<std::string>& texts, Tally& t, const std::string& path) {
  for (const auto& s : texts)
    if (s.empty() || !polar::is_valid_utf8(s)) t.fail("accepted an empty or invalid text", path);
}

// Reads `path` with and without --skip-invalid; a line error without the flag must be skippable
// with it, and every error must name the file.
template <typename Read, typename Texts>
void check_jsonl_case(const std::string& path, Tally& t, Read read, Texts texts) {
  ++t.cases;
  std::string strict_error;
  for (bool skip : {false, true}) {
    try {
      polar::ReadStats stats;
      for (const auto& r : read(path, skip, &stats)) check_texts(texts(r), t, path);
      if (!skip) ++t.accepted;
    } catch (const polar::Error& e) {
      const std::string msg = e.what();
      if (msg.rfind(path, 0) != 0) t.fail("message without the file", msg);
      if (!skip) {
        strict_error = msg;
        ++t.rejected;
      } else if (contains(strict_error, path + ":") && !contains(msg, "empty file")) {
        t.fail("--skip-invalid did not skip", msg);
      }
    } catch (const std::exception& e) {
      t.fail("not a polar::Error", e.what());
    }
  }
}

void report(const Tally& t, const std::string& name) {
  std::cout << t.summary(name) << std::endl;
  for (const auto& e : t.examples) ADD_FAILURE() << name << ": " << e;
  EXPECT_EQ(t.failures, 0);
  EXPECT_GT(t.rejected, 0) << "the mutations never produced invalid input";
}

// kCases files of `lines` with some lines damaged, each read with and without --skip-invalid.
template <typename Read, typename Texts>
void run_jsonl_campaign(const std::string& name, uint64_t stream, const std::vector<json>& lines,
                        Read read, Texts texts) {
  TempDir tmp;
  Mutator m(kSeed + stream);
  Tally t;
  const std::string path = tmp / (name + ".jsonl");
  for (int64_t c = 0; c < kCases; ++c) {
    polar::fuzz::write_file(path, mutated_jsonl(m, lines));
    check_jsonl_case(path, t, read, texts);
  }
  report(t, name);
}

}  // namespace

TEST(Fuzz, PreferenceJsonl) {
  run_jsonl_campaign(
      "preference-jsonl", 1, preference_lines(), polar::read_preferences,
      [](const polar::PreferenceRecord& r) {
        return std::vector<std::string>{r.prompt, r.reference, r.chosen, r.rejected, r.category};
      });
}

TEST(Fuzz, TrajectoryJsonl) {
  run_jsonl_campaign("trajectory-jsonl", 2, trajectory_lines(), polar::read_trajectories,
                     [](const polar::TrajectoryRecord& r) {
                       return std::vector<std::string>{r.prompt, r.policy, r.response, r.category};
                     });
}

namespace {

const std::vector<std::string> kHostileOverrides = {"train.lr=1e999",
                                                    "model.vocab_size=2147483648",
                                                    "model.hidden_size=65536",
                                                    "train.beta1=null",
                                                    "run.log_every=-1",
                                                    "train.eps=1e30",
                                                    "a.b=1",
                                                    "model=3",
                                                    "train.lr=4294967297",
                                                    "model.num_heads=0",
                                                    "data.row_tokens=4294967296",
                                                    "train.steps=1e20",
                                                    "loss.center_coef=-1",
                                                    "model.init_seed=-5"};

// Loads a config; an accepted one must re-validate, and its shape must fit (or be refused).
void check_config_case(const std::string& path, const std::vector<std::string>& overrides,
                       Tally& t) {
  ++t.cases;
  try {
    polar::TrainConfig cfg = polar::load_train_config(path, overrides);
    cfg.model.shape.validate();
    polar::TrainConfig::from_json(cfg.to_json(), "resolved");
    polar::check_model_memory(cfg.model.shape, 16.0, "training");
    ++t.accepted;
  } catch (const polar::Error& e) {
    const std::string msg = e.what();
    if (!contains(msg, path) && !contains(msg, "--set") && !contains(msg, "model:"))
      t.fail("message without the file", msg);
    ++t.rejected;
  } catch (const std::exception& e) {
    t.fail("not a polar::Error", e.what());
  }
}

}  // namespace

TEST(Fuzz, TrainConfigs) {
  TempDir tmp;
  Mutator m(kSeed + 3);
  Tally t;
  const json base = json::parse(polar::testing::tiny_train_config(tmp / "data", tmp / "run", 4));
  for (int64_t c = 0; c < kCases; ++c) {
    const std::string path = tmp / "config.json";
    polar::fuzz::write_file(path, m.mutate(base));
    std::vector<std::string> overrides;
    if (m.chance(0.3)) overrides.push_back(kHostileOverrides[m.below(kHostileOverrides.size())]);
    check_config_case(path, overrides, t);
  }
  report(t, "train-config");
}

namespace {

bool is_tensor_file(const fs::path& p) {
  return p.extension() == ".safetensors" || p.extension() == ".pt";
}

void check_checkpoint_case(const std::string& base, const std::string& dir, const fs::path& rel,
                           bool verify, Tally& t) {
  ++t.cases;
  const bool changed = !fs::exists(fs::path(dir) / rel) ||
                       polar::fuzz::read_file((fs::path(dir) / rel).string()) !=
                           polar::fuzz::read_file((fs::path(base) / rel).string());
  try {
    polar::LoadedModel lm = polar::load_model(dir, torch::kCPU, verify);
    if (verify && changed && is_tensor_file(rel))
      t.fail("corrupt tensor file not detected", rel.string());
    if (verify) {
      for (const auto& p : lm.model->parameters())
        if (!torch::isfinite(p).all().item<bool>())
          t.fail("non-finite weights accepted", rel.string());
      torch::optim::AdamW opt(lm.model->parameters(), torch::optim::AdamWOptions(1e-3));
      polar::load_optimizer_state(opt, dir);
      polar::load_trainer_state(dir);
    }
    ++t.accepted;
  } catch (const polar::Error& e) {
    if (!contains(e.what(), dir)) t.fail("message without the checkpoint", e.what());
    ++t.rejected;
  } catch (const std::exception& e) {
    t.fail("not a polar::Error", std::string(rel.string()) + ": " + e.what());
  }
}

}  // namespace

TEST(Fuzz, Checkpoints) {
  TempDir tmp;
  auto gen = at::detail::getDefaultCPUGenerator();
  const torch::Tensor rng_state = gen.get_state();  // load_trainer_state sets it; restored below
  const std::string base = polar::testing::write_tiny_checkpoint(tmp / "base-checkpoint");
  Mutator m(kSeed + 4);
  Tally t;
  for (int64_t c = 0; c < kCases; ++c) {
    const std::string dir = tmp / "checkpoint";
    const fs::path rel = polar::fuzz::damage_tree_copy(m, base, dir, 0.08);
    check_checkpoint_case(base, dir, rel, !m.chance(0.25), t);
  }
  gen.set_state(rng_state);
  report(t, "checkpoint");
}
