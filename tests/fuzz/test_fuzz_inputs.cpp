// Fuzz harness over the newer untrusted inputs (see test_fuzz.cpp for the older ones):
// tokenizer.json files, LoRA checkpoint directories and sampler pool files, each a valid seed
// mutated (POLAR_FUZZ_CASES per kind). A case either loads and passes the checks of what it
// gives, or throws a polar::Error naming the input; any other exception, or an accepted input
// that breaks a rule the file format states, is a failure.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "common/tiny_checkpoint.h"
#include "common/tiny_data.h"
#include "fuzz/fuzz_seeds.h"
#include "fuzz/fuzz_util.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/lora_checkpoint.h"
#include "polar/common/error.h"
#include "polar/config/train_config.h"
#include "polar/eval/eval.h"
#include "polar/model/lora.h"
#include "polar/sample/pool.h"
#include "polar/tokenizer/formatted_text.h"
#include "polar/tokenizer/template.h"
#include "polar/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using polar::fuzz::contains;
using polar::fuzz::Mutator;
using polar::fuzz::Tally;
using polar::testing::TempDir;

namespace {

const uint64_t kSeed = polar::fuzz::seed();
const int64_t kCases = polar::fuzz::env_count("POLAR_FUZZ_CASES", 80);

void report(const Tally& t, const std::string& name) {
  std::cout << t.summary(name) << std::endl;
  for (const auto& e : t.examples) ADD_FAILURE() << name << ": " << e;
  EXPECT_EQ(t.failures, 0);
  EXPECT_GT(t.rejected, 0) << "the mutations never produced invalid input";
  EXPECT_GT(t.accepted, 0) << "the mutations never left the input valid";
}

// ---- tokenizer.json ----

// Rules a tokenizer.json states for itself, read here without polar's reader: token ids are
// non-negative 32-bit integers (the `tokenizers` library's u32; polar takes < 2^30).
bool ids_out_of_range(const std::string& text) {
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  auto bad = [](const json& id) {
    return id.is_number_integer() &&
           (id.is_number_unsigned() ? id.get<uint64_t>() >= (1u << 30)
                                    : id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 30));
  };
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (const auto& t : j["added_tokens"])
      if (t.is_object() && t.contains("id") && bad(t["id"])) return true;
  if (j.contains("model") && j["model"].is_object() && j["model"].contains("vocab") &&
      j["model"]["vocab"].is_object())
    for (const auto& [k, id] : j["model"]["vocab"].items())
      if (bad(id)) return true;
  return false;
}

const std::vector<std::string> kProbeTexts = {
    "the theme",
    " the  a b\n\tab",
    "<s>x</s>",
    "what is 1\nyes<|reward|>what is 1\nno<|reward_token|>",
    "caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x99\x82 \xe4\xb8\xad\xe6\x96\x87",
    "",
    "<|reward|><|reward|>",
};

// An accepted tokenizer must encode and decode every probe with ids in range and ordered ends,
// and save and reload to the same fingerprint.
void check_tokenizer(const polar::Tokenizer& tok, const std::string& dir, bool round_trip,
                     Tally& t) {
  const int64_t vocab = tok.vocab_size();
  if (vocab <= 0) return t.fail("accepted an empty vocabulary", dir);
  const auto& s = tok.special();
  if (s.reward < 0 || s.reward >= vocab || s.reward_sep < 0 || s.reward_sep >= vocab)
    t.fail("template token ids out of range", dir);
  for (const auto& text : kProbeTexts) {
    std::vector<int32_t> ids;
    std::vector<size_t> ends;
    tok.encode_split_specials(text, ids, ends);
    if (ids.size() != ends.size()) return t.fail("ids and ends differ in length", text);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= vocab)
        return t.fail("id out of range", dir + ": " + std::to_string(ids[i]));
      if (ends[i] > text.size() || (i && ends[i] < ends[i - 1]))
        return t.fail("ends out of order", dir + ": " + json(text).dump());
      (void)tok.id_to_piece(ids[i]);
    }
    (void)tok.decode(ids);
    (void)polar::encode_formatted_text(tok, text);
  }
  if (round_trip) {
    const std::string again = dir + "-saved";
    tok.save(again);
    if (polar::Tokenizer::load(again).fingerprint() != tok.fingerprint())
      t.fail("saved tokenizer reloads with another fingerprint", dir);
    polar::fuzz::remove_tree(again);
  }
}

// POLAR_FUZZ_KEEP_TOKENIZERS=DIR keeps every accepted tokenizer.json with polar's ids of the
// probes, for scripts/fuzz_tokenizers_reference.py to compare with the `tokenizers` library.
void keep_for_reference(const std::string& keep, int64_t c, const std::string& text,
                        const polar::Tokenizer& tok) {
  json probes = json::array();
  for (const auto& p : kProbeTexts) probes.push_back({p, polar::encode_formatted_text(tok, p)});
  polar::fuzz::write_file(keep + "/case-" + std::to_string(c) + ".json",
                          json{{"tokenizer", text}, {"probes", probes}}.dump(
                              -1, ' ', false, json::error_handler_t::replace));
}

}  // namespace

TEST(Fuzz, TokenizerJson) {
  const char* keep_env = std::getenv("POLAR_FUZZ_KEEP_TOKENIZERS");
  const std::string keep = keep_env ? keep_env : "";
  if (!keep.empty()) fs::create_directories(keep);
  TempDir tmp;
  Mutator m(kSeed + 21);
  Tally t;
  const std::vector<json> seeds = polar::fuzz::tokenizer_json_seeds();
  // The sidecar save() writes, for a few cases.
  std::vector<json> sidecars;
  for (size_t i = 0; i < seeds.size(); ++i) {
    const std::string dir = tmp / ("seed" + std::to_string(i));
    fs::create_directories(dir);
    polar::fuzz::write_file(dir + "/tokenizer.json", seeds[i].dump());
    const polar::Tokenizer tok = polar::Tokenizer::load(dir);  // the seeds are valid
    check_tokenizer(tok, dir, true, t);
    tok.save(dir + "/saved");
    sidecars.push_back(json::parse(polar::fuzz::read_file(dir + "/saved/polar_tokenizer.json")));
  }
  ASSERT_EQ(t.failures, 0) << t.examples.front();
  for (int64_t c = 0; c < kCases; ++c) {
    const size_t which = m.below(seeds.size());
    const std::string dir = tmp / "case";
    polar::fuzz::remove_tree(dir);
    fs::create_directories(dir);
    const std::string path = dir + "/tokenizer.json", sidecar = dir + "/polar_tokenizer.json";
    std::string text = seeds[which].dump(), damaged = sidecar;
    if (m.chance(0.15)) {
      polar::fuzz::write_file(sidecar, m.mutate(sidecars[which]));
    } else {
      text = m.mutate(seeds[which]);
      damaged = path;
    }
    polar::fuzz::write_file(path, text);
    ++t.cases;
    try {
      const polar::Tokenizer tok = polar::Tokenizer::load(dir);
      ++t.accepted;
      if (ids_out_of_range(text)) t.fail("accepted a token id outside [0, 2^30)", text);
      check_tokenizer(tok, dir, m.chance(0.1), t);
      if (!keep.empty() && damaged == path) keep_for_reference(keep, c, text, tok);
    } catch (const polar::Error& e) {
      ++t.rejected;
      if (!contains(e.what(), dir)) t.fail("message without the file", e.what());
    } catch (const std::exception& e) {
      t.fail("not a polar::Error", damaged + ": " + e.what());
    }
  }
  report(t, "tokenizer-json");
}

// ---- LoRA checkpoints ----

namespace {

struct LoraFixture {
  std::string base, base_pristine, dir;
  json config;                 // the LoRA checkpoint's config.json
  std::vector<float> rewards;  // of probe_groups() by base + adapters
};

std::vector<polar::EncodedGroup> probe_groups(const polar::Tokenizer& tok) {
  std::vector<polar::EncodedGroup> out;
  for (int i = 0; i < 2; ++i)
    out.push_back(*polar::encode_group_text(tok, polar::TemplateKind::Finetune,
                                            "what is " + std::to_string(i), "the sea",
                                            {"a tree", "many numbers"}, polar::TemplateLimits{}));
  return out;
}

// A base checkpoint and a rank-2 LoRA checkpoint on it with non-zero adapters.
LoraFixture write_lora_fixture(const TempDir& tmp) {
  LoraFixture f;
  f.base_pristine = polar::testing::write_tiny_checkpoint(tmp / "base-pristine", false);
  f.base = tmp / "base";
  fs::copy(f.base_pristine, f.base, fs::copy_options::recursive);
  polar::LoadedModel lm = polar::load_model(f.base, torch::kCPU);
  const std::string fingerprint = polar::base_fingerprint(*lm.model);
  polar::LoraConfig lora;
  lora.rank = 2;
  lora.alpha = 4;
  lora.targets = {"q", "v", "down"};
  polar::add_lora(*lm.model, lora, 7);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : lm.model->named_parameters())
      if (polar::is_lora_parameter(p.key())) p.value().normal_(0, 0.2);
  }
  polar::TrainConfig cfg;
  cfg.model.shape = polar::testing::tiny_checkpoint_shape();
  cfg.model.lora = lora;
  f.config = cfg.to_json();
  f.config["lora_base"] = polar::LoraBase{f.base, fingerprint}.to_json();
  f.dir = tmp / "lora-pristine";
  polar::save_checkpoint(f.dir, {&lm.model, &lm.tokenizer, &f.config, nullptr, nullptr, ""});
  polar::LoadedModel loaded = polar::load_model(f.dir, torch::kCPU);
  f.config = loaded.config;
  f.rewards = polar::reward_groups(loaded, probe_groups(loaded.tokenizer), polar::ScoreOptions{});
  return f;
}

bool same_file(const std::string& a, const std::string& b) {
  return fs::exists(a) && fs::exists(b) && polar::fuzz::read_file(a) == polar::fuzz::read_file(b);
}

}  // namespace

TEST(Fuzz, LoraCheckpoints) {
  TempDir tmp;
  auto gen = at::detail::getDefaultCPUGenerator();
  const torch::Tensor rng_state = gen.get_state();
  const LoraFixture f = write_lora_fixture(tmp);
  Mutator m(kSeed + 22);
  Tally t;
  const std::string dir = tmp / "lora";
  bool base_damaged = false;
  for (int64_t c = 0; c < kCases; ++c) {
    // Mostly the adapter directory; sometimes the base it names (which must then be refused).
    const bool hit_base = m.chance(0.15);
    fs::path rel;
    if (hit_base) {
      rel = polar::fuzz::damage_tree_copy(m, f.base_pristine, f.base, 0.05);
      polar::fuzz::remove_tree(dir);
      fs::copy(f.dir, dir, fs::copy_options::recursive);
      base_damaged = true;
    } else {
      if (base_damaged) {
        polar::fuzz::remove_tree(f.base);
        fs::copy(f.base_pristine, f.base, fs::copy_options::recursive);
        base_damaged = false;
      }
      rel = polar::fuzz::damage_tree_copy(m, f.dir, dir, 0.05);
    }
    const std::string from = hit_base ? f.base_pristine : f.dir, to = hit_base ? f.base : dir;
    const bool changed = !same_file((fs::path(from) / rel).string(), (fs::path(to) / rel).string());
    const bool verify = !m.chance(0.2);
    ++t.cases;
    try {
      polar::LoadedModel lm = polar::load_model(dir, torch::kCPU, verify);
      ++t.accepted;
      const bool tensors = rel.extension() == ".safetensors";
      if (verify && changed && tensors) t.fail("corrupt tensor file not detected", rel.string());
      if (!polar::has_lora(*lm.model)) t.fail("loaded without its adapters", rel.string());
      const auto rewards =
          polar::reward_groups(lm, probe_groups(lm.tokenizer), polar::ScoreOptions{});
      for (float r : rewards)
        if (verify && !std::isfinite(r)) t.fail("non-finite reward accepted", rel.string());
      // The same model settings and weights must give the same rewards.
      const bool same_model = lm.config.contains("model") &&
                              lm.config["model"] == f.config["model"] &&
                              lm.config.value("lora_base", json()) == f.config["lora_base"];
      if (same_model && (!changed || (verify && tensors)) && !hit_base && rewards != f.rewards)
        t.fail("same settings, other rewards", rel.string());
      if (hit_base && changed && tensors && verify)
        t.fail("a damaged base was accepted", rel.string());
    } catch (const polar::Error& e) {
      ++t.rejected;
      if (!contains(e.what(), dir) && !contains(e.what(), f.base))
        t.fail("message without the checkpoint", e.what());
    } catch (const std::exception& e) {
      t.fail("not a polar::Error", rel.string() + ": " + e.what());
    }
  }
  gen.set_state(rng_state);
  report(t, "lora-checkpoint");
}

// ---- sampler pool files ----

namespace {

// What a pool entry promises the sampler: limits it can turn into durations and counts.
void check_policy(const polar::sample::PolicySpec& p, const std::string& path, Tally& t) {
  const auto& s = p.sampling;
  auto fail = [&](const std::string& what) { t.fail(what, path + ": policy " + p.name); };
  if (p.name.empty()) fail("accepted an empty name");
  if (!std::isfinite(s.temperature) || s.temperature < 0 || !(s.top_p > 0 && s.top_p <= 1) ||
      s.top_k < 0 || s.max_new_tokens < 1 || !(s.min_p >= 0 && s.min_p < 1) ||
      !(std::isfinite(s.repetition_penalty) && s.repetition_penalty > 0))
    fail("accepted sampling out of range");
  if (p.is_server) {
    const auto& v = p.server;
    if (v.endpoint.rfind("http://", 0) != 0 && v.endpoint.rfind("https://", 0) != 0)
      fail("accepted an endpoint that is not http(s)");
    if (v.model.empty() || v.concurrency < 1) fail("accepted an empty model or concurrency < 1");
    // The timeout becomes int64 microseconds; a retry waits retry_backoff_s * 2^k seconds.
    if (!(v.timeout_s >= 1e-6 && v.timeout_s * 1e6 < 9.2e18))
      fail("accepted a timeout that is no duration: " + std::to_string(v.timeout_s));
    if (v.max_retries < 0 || v.max_retries > 62 ||
        !(v.retry_backoff_s >= 0 &&
          v.retry_backoff_s * std::ldexp(1.0, static_cast<int>(std::min<int64_t>(
                                                  std::max<int64_t>(v.max_retries, 0), 62))) <
              9.2e9))
      fail("accepted retries whose waits overflow: " + std::to_string(v.max_retries) + " x " +
           std::to_string(v.retry_backoff_s));
  } else {
    const auto& b = p.builtin;
    if (b.model_dir.empty()) fail("accepted an empty model_dir");
    if (b.batch_size < 1) fail("accepted batch_size < 1");
    if (!b.chat_template.empty() && !contains(b.chat_template, "{prompt}"))
      fail("accepted a chat_template without {prompt}");
  }
}

}  // namespace

TEST(Fuzz, SamplerPools) {
  TempDir tmp;
  Mutator m(kSeed + 23);
  Tally t;
  const json seed = polar::fuzz::pool_seed();
  const std::string path = tmp / "pool.json";
  for (int64_t c = 0; c < kCases; ++c) {
    polar::fuzz::write_file(path, c == 0 ? seed.dump() : m.mutate(seed));
    ++t.cases;
    try {
      const auto pool = polar::sample::read_pool(path);
      ++t.accepted;
      std::set<std::string> names;
      for (const auto& p : pool) {
        check_policy(p, path, t);
        if (!names.insert(p.name).second) t.fail("accepted a duplicate name", p.name);
        if (!p.is_server && !fs::path(p.builtin.model_dir).is_absolute())
          t.fail("a relative model_dir not resolved against the pool file", p.builtin.model_dir);
      }
    } catch (const polar::Error& e) {
      ++t.rejected;
      if (!contains(e.what(), path)) t.fail("message without the file", e.what());
    } catch (const std::exception& e) {
      t.fail("not a polar::Error", e.what());
    }
  }
  report(t, "sampler-pool");
}
