// Export to Hugging Face layouts and back: import -> export -> import is bit-exact in fp32 for
// both formats, cross-format exports keep the rewards, bf16 exports are close, shards and the
// tokenizer files are written, model.init_from accepts an HF directory, and `polar score` gives
// the same numbers on the checkpoint and on its fp32 export.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/hf_test_util.h"
#include "model/tiny_model.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/hf.h"
#include "polar/common/error.h"
#include "polar/config/train_config.h"
#include "polar/io/safetensors.h"
#include "polar/train/run_setup.h"

namespace polar::io {
namespace {

namespace fs = std::filesystem;
using hftest::params_of;
using hftest::rewards_of;
using nlohmann::json;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

LoadedModel polar_model(const std::string& architecture, bool qkv_bias, double rope_scaling,
                        uint64_t seed) {
  ModelConfig c = testutil::tiny_config(/*kv_heads=*/2, qkv_bias);
  c.architecture = architecture;
  c.rope_scaling = rope_scaling;
  LoadedModel lm;
  lm.model = testutil::tiny_model(c, seed);
  lm.shape = lm.model->config();
  lm.tokenizer = Tokenizer::load(testing::tiny_tokenizer_dir());
  lm.config = json{{"model", lm.shape.to_json()}};
  return lm;
}

HfExportOptions fp32(const std::string& format) {
  HfExportOptions o;
  o.format = format;
  o.dtype = "fp32";
  return o;
}

struct RoundTripCase {
  const char* architecture;
  bool qkv_bias;
  double rope_scaling;
  const char* format;
  const char* expect_class;
};

TEST(HfRoundTrip, ImportExportImportIsBitExact) {
  const RoundTripCase cases[] = {
      {"llama", false, 1.0, "auto", "LlamaForSequenceClassification"},
      {"llama", false, 2.0, "hf-llama", "LlamaForSequenceClassification"},
      {"qwen2", true, 1.0, "auto", "Qwen2ForSequenceClassification"},
      {"internlm2", false, 1.0, "auto", "InternLM2ForRewardModel"},
      {"internlm2", true, 4.0, "hf-internlm2", "InternLM2ForRewardModel"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(std::string(tc.architecture) + " -> " + tc.format);
    testing::TempDir tmp;
    LoadedModel original = polar_model(tc.architecture, tc.qkv_bias, tc.rope_scaling, 21);
    export_hf(original, tmp / "first", fp32(tc.format));
    const json config = read_json_file(tmp / "first/config.json");
    EXPECT_EQ(config["architectures"][0], tc.expect_class);
    LoadedModel imported = import_hf(tmp / "first", torch::kCPU);
    EXPECT_EQ(imported.shape.to_json(), original.shape.to_json());
    hftest::expect_same_params(params_of(imported.model), params_of(original.model));
    const SpecialTokens &a = imported.tokenizer.special(), &b = original.tokenizer.special();
    EXPECT_EQ(std::vector<int32_t>({a.bos, a.eos, a.pad, a.reward_sep, a.reward}),
              std::vector<int32_t>({b.bos, b.eos, b.pad, b.reward_sep, b.reward}));
    // Exporting the import again writes the same bytes.
    export_hf(imported, tmp / "second", fp32(tc.format));
    for (const char* f :
         {"model.safetensors", "config.json", "tokenizer.model", "tokenizer_config.json"}) {
      EXPECT_EQ(slurp(tmp / "first/" + f), slurp(tmp / "second/" + f)) << f;
    }
  }
}

// Qwen3 (q/k norms, head_dim apart from hidden / heads, tied embeddings) and Llama 3.1 RoPE:
// the export names the family's class and keeps the llama3 keys; import gives the shape back.
TEST(HfRoundTrip, Qwen3AndLlama3AreBitExact) {
  ModelConfig qwen3 = testutil::tiny_qwen3_config();
  qwen3.tie_embeddings = true;
  for (const ModelConfig& c : {qwen3, testutil::tiny_llama3_config()}) {
    SCOPED_TRACE(c.architecture);
    testing::TempDir tmp;
    LoadedModel original;
    original.model = testutil::tiny_model(c, 23);
    original.shape = original.model->config();
    original.tokenizer = Tokenizer::load(testing::tiny_tokenizer_dir());
    original.config = json{{"model", original.shape.to_json()}};
    export_hf(original, tmp / "first", fp32("auto"));
    const json config = read_json_file(tmp / "first/config.json");
    if (c.qk_norm()) {
      EXPECT_EQ(config["architectures"][0], "Qwen3ForSequenceClassification");
      EXPECT_EQ(config["head_dim"], 24);
      EXPECT_EQ(config["tie_word_embeddings"], true);
    } else {
      EXPECT_EQ(config["architectures"][0], "LlamaForSequenceClassification");
      const json want = {{"rope_type", "llama3"},
                         {"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 64}};
      for (const auto& [key, value] : want.items()) {
        EXPECT_EQ(config["rope_scaling"][key], value) << key;
        EXPECT_EQ(config["rope_parameters"][key], value) << key;
      }
      EXPECT_EQ(config["rope_parameters"]["rope_theta"], 5000.0);
    }
    LoadedModel imported = import_hf(tmp / "first", torch::kCPU);
    EXPECT_EQ(imported.shape.to_json(), original.shape.to_json());
    hftest::expect_same_params(params_of(imported.model), params_of(original.model));
    export_hf(imported, tmp / "second", fp32("auto"));
    for (const char* f : {"model.safetensors", "config.json"})
      EXPECT_EQ(slurp(tmp / "first/" + f), slurp(tmp / "second/" + f)) << f;
  }
  // InternLM2's config cannot say llama3.
  LoadedModel lm;
  ModelConfig c = testutil::tiny_llama3_config();
  c.architecture = "internlm2";
  lm.model = testutil::tiny_model(c, 3);
  lm.shape = lm.model->config();
  lm.tokenizer = Tokenizer::load(testing::tiny_tokenizer_dir());
  testing::TempDir tmp;
  EXPECT_THROW(export_hf(lm, tmp / "x", fp32("auto")), Error);
  EXPECT_FALSE(fs::exists(tmp / "x"));
}

TEST(HfRoundTrip, CrossFormatExportsKeepWeightsAndRewards) {
  for (const char* arch : {"llama", "internlm2"}) {
    SCOPED_TRACE(arch);
    testing::TempDir tmp;
    LoadedModel original = polar_model(arch, false, 1.0, 5);
    const auto seqs = hftest::polar_sequences(6, original.tokenizer.vocab_size(),
                                              original.tokenizer.special().bos,
                                              original.tokenizer.special().reward, 9);
    const char* other = std::string(arch) == "llama" ? "hf-internlm2" : "hf-llama";
    export_hf(original, tmp / "other", fp32(other));
    LoadedModel twin = import_hf(tmp / "other", torch::kCPU);
    EXPECT_EQ(twin.shape.architecture, std::string(arch) == "llama" ? "internlm2" : "llama");
    hftest::expect_same_params(params_of(twin.model), params_of(original.model));
    EXPECT_EQ(rewards_of(twin.model, seqs), rewards_of(original.model, seqs));
  }
}

TEST(HfRoundTrip, Bf16ExportIsCloseAndStoredAsBf16) {
  testing::TempDir tmp;
  LoadedModel original = polar_model("llama", false, 1.0, 8);
  HfExportOptions o;  // defaults: auto, bf16
  export_hf(original, tmp / "bf16", o);
  auto file = SafetensorsFile::open(tmp / "bf16/model.safetensors");
  EXPECT_EQ(file.info("score.weight").dtype, "BF16");
  EXPECT_EQ(file.info("model.embed_tokens.weight").dtype, "BF16");
  EXPECT_EQ(read_json_file(tmp / "bf16/config.json")["torch_dtype"], "bfloat16");
  LoadedModel back = import_hf(tmp / "bf16", torch::kCPU);
  const auto seqs =
      hftest::polar_sequences(6, original.tokenizer.vocab_size(), original.tokenizer.special().bos,
                              original.tokenizer.special().reward, 2);
  const auto want = rewards_of(original.model, seqs), got = rewards_of(back.model, seqs);
  for (size_t i = 0; i < seqs.size(); ++i) {
    // bf16 keeps 8 bits of mantissa (relative error 2^-9 per weight); through two layers the
    // rewards, of order 1 here, move by a few percent at most.
    EXPECT_NEAR(got[i], want[i], 0.05 * std::max(1.0, std::abs(want[i]))) << i;
    EXPECT_NE(got[i], want[i]) << "bf16 rounding should show";
  }
}

TEST(HfRoundTrip, ShardsTokenizerFilesAndPadToken) {
  testing::TempDir tmp;
  LoadedModel original = polar_model("llama", false, 1.0, 3);
  HfExportOptions o = fp32("hf-llama");
  o.max_shard_bytes = 64 << 10;  // the tiny model is ~1 MB in fp32
  export_hf(original, tmp / "sharded", o);
  ASSERT_TRUE(fs::exists(tmp / "sharded/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(tmp / "sharded/model.safetensors"));
  hftest::expect_same_params(params_of(import_hf(tmp / "sharded", torch::kCPU).model),
                             params_of(original.model));

  const SpecialTokens& s = original.tokenizer.special();
  const json config = read_json_file(tmp / "sharded/config.json");
  EXPECT_EQ(config["pad_token_id"], s.pad);
  EXPECT_NE(config["pad_token_id"], s.reward);  // the score is read at the last non-pad token
  EXPECT_EQ(config["reward_token_id"], s.reward);
  const json tok = read_json_file(tmp / "sharded/tokenizer_config.json");
  EXPECT_EQ(tok["tokenizer_class"], "LlamaTokenizer");
  EXPECT_EQ(tok["added_tokens_decoder"][std::to_string(s.reward)]["content"],
            original.tokenizer.id_to_piece(s.reward));
  EXPECT_EQ(tok["added_tokens_decoder"][std::to_string(s.reward_sep)]["content"], "<|reward|>");
  EXPECT_EQ(read_json_file(tmp / "sharded/special_tokens_map.json")["pad_token"],
            original.tokenizer.id_to_piece(s.pad));

  // A non-empty output directory is kept unless --overwrite.
  try {
    export_hf(original, tmp / "sharded", fp32("hf-llama"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--overwrite"), std::string::npos) << e.what();
  }
  o.overwrite = true;
  o.max_shard_bytes = 1ull << 30;
  export_hf(original, tmp / "sharded", o);
  EXPECT_TRUE(fs::exists(tmp / "sharded/model.safetensors"));
  EXPECT_FALSE(fs::exists(tmp / "sharded/model.safetensors.index.json"));
}

TEST(HfRoundTrip, InternLM2ExportCopiesRemoteCodeFromTheSource) {
  testing::TempDir tmp;
  fs::create_directories(tmp / "code");
  for (const char* f :
       {"configuration_internlm2.py", "modeling_internlm2.py", "tokenization_internlm2.py"}) {
    std::ofstream(tmp / "code/" + f) << "# " << f << "\n";
  }
  LoadedModel lm = polar_model("internlm2", false, 1.0, 4);
  lm.config["model"]["init_from"] =
      tmp / "code";  // as in a checkpoint fine-tuned from that directory
  export_hf(lm, tmp / "out", HfExportOptions{});
  EXPECT_EQ(slurp(tmp / "out/modeling_internlm2.py"), "# modeling_internlm2.py\n");
  const json tok = read_json_file(tmp / "out/tokenizer_config.json");
  EXPECT_EQ(tok["auto_map"]["AutoTokenizer"][0], "tokenization_internlm2.InternLM2Tokenizer");
  const json config = read_json_file(tmp / "out/config.json");
  EXPECT_EQ(config["reward_token_id"], lm.tokenizer.special().reward);
  EXPECT_FALSE(SafetensorsFile::open(tmp / "out/model.safetensors").contains("score.weight"));
  EXPECT_TRUE(SafetensorsFile::open(tmp / "out/model.safetensors").contains("v_head.weight"));
}

// model.init_from naming a Hugging Face directory: the run starts from its weights, shape and
// tokenizer (which must be the one the data was built with).
TEST(HfRoundTrip, TrainingStartsFromAHfDirectory) {
  testing::TempDir tmp;
  testing::write_copy_task_dataset(tmp / "data", 8, 2);
  LoadedModel lm = polar_model("internlm2", false, 1.0, 6);
  export_hf(lm, tmp / "hf", fp32("hf-internlm2"));
  std::ofstream(tmp / "train.json") << testing::tiny_train_config(tmp / "data", tmp / "run", 2);
  TrainConfig cfg = load_train_config(tmp / "train.json", {"model.init_from=" + (tmp / "hf")});
  RunSetup run = prepare_run(cfg, torch::kCPU, std::nullopt);
  hftest::expect_same_params(params_of(run.model), params_of(lm.model));
  EXPECT_EQ(run.resolved_config["model"]["architecture"], "internlm2");
  EXPECT_EQ(run.tokenizer.special().reward, lm.tokenizer.special().reward);
}

std::string polar_bin() {
  const char* env = std::getenv("POLAR_BIN");
  return env ? env : std::string(POLAR_BINARY_DIR) + "/polar";
}

// The commands end to end: polar import/export, then `polar score` on the checkpoint and on its
// fp32 export (read through the importer) print the same rewards.
TEST(HfRoundTrip, CommandsScoreTheSameOnCheckpointAndExport) {
  if (!fs::exists(polar_bin())) GTEST_SKIP() << polar_bin() << " is not built";
  testing::TempDir tmp;
  LoadedModel lm = polar_model("internlm2", false, 1.0, 13);
  save_checkpoint(tmp / "ckpt",
                  CheckpointContents{&lm.model, &lm.tokenizer, &lm.config, nullptr, nullptr, {}});
  std::ofstream(tmp / "in.jsonl")
      << R"({"prompt": "the capital", "reference": "Beijing.", "output": "Beijing."})"
      << "\n"
      << R"({"prompt": "the capital", "reference": "Beijing.", "output": "Shanghai."})"
      << "\n";
  auto run = [&](const std::string& args) {
    const std::string cmd = polar_bin() + " " + args + " >> " + (tmp / "log.txt") + " 2>&1";
    return std::system(cmd.c_str());
  };
  ASSERT_EQ(
      run("export --checkpoint " + (tmp / "ckpt") + " --output " + (tmp / "hf") + " --dtype fp32"),
      0)
      << slurp(tmp / "log.txt");
  ASSERT_EQ(run("import --from " + (tmp / "hf") + " --output " + (tmp / "back")), 0)
      << slurp(tmp / "log.txt");
  for (const char* src : {"ckpt", "hf", "back"}) {
    ASSERT_EQ(run(std::string("score --device cpu --checkpoint ") + (tmp / src) + " --input " +
                  (tmp / "in.jsonl") + " --output " + (tmp / (std::string(src) + ".out"))),
              0)
        << slurp(tmp / "log.txt");
  }
  const std::string want = slurp(tmp / "ckpt.out");
  EXPECT_NE(want.find("\"reward\""), std::string::npos) << want;
  EXPECT_EQ(slurp(tmp / "hf.out"), want);
  EXPECT_EQ(slurp(tmp / "back.out"), want);
  EXPECT_NE(run("import --from " + (tmp / "ckpt") + " --output " + (tmp / "x")),
            0);  // not an HF directory
}

}  // namespace
}  // namespace polar::io
