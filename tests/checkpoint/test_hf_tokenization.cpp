// POLAR-template strings as POLAR's client sends them, tokenised by polar
// (encode_formatted_text, and encode_group_text on the fields) and by the reference tools
// (tests/common/hf_reference.py tokenize): the sentencepiece Python package run by run, and
// transformers' sentencepiece tokenizer; and `polar score` on an export against transformers'
// reward of the same strings. Tokenizers: BPE and unigram, dummy prefix on and off, byte
// fallback, split digits, identity and NFKC normalisation. Skipped without the venv's
// transformers (scripts/setup.sh installs it).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <iostream>

#include "common/hf_test_util.h"
#include "common/tiny_data.h"
#include "model/tiny_model.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/hf.h"
#include "polar/eval/eval.h"
#include "polar/tokenizer/formatted_text.h"

namespace polar::io {
namespace {

using nlohmann::json;

struct Variant {
  std::string type;
  bool prefix;
  std::string norm;
  std::string name() const { return testing::tokenizer_variant_name(type, prefix, norm); }
};

// (prompt, reference, output) records whose fields start with spaces, newlines, digits,
// non-ASCII and emoji.
const std::vector<std::array<std::string, 3>> kRecords = {
    {"What is the capital of China?", "Beijing.", "Shanghai."},
    {" leading space", "  two spaces", "\nnewline first"},
    {"123 count", "45 yes", "6 7"},
    {"北京是中国的首都吗？", "是的。", "不是"},
    {"😀 emoji", "🚀", "😀😀 sea"},
    {"the sea\n", "\n\nsky", " tree "},
    {"tab\there", "café naïve", "Å 9"},
};

TEST(HfTokenization, JoinedStringsMatchSentencepieceAndTransformers) {
  if (!hftest::transformers_available())
    GTEST_SKIP() << hftest::kPython << " or transformers is missing";
  testing::TempDir out;
  const std::vector<Variant> variants = {{"bpe", false, "identity"},
                                         {"bpe", true, "identity"},
                                         {"unigram", false, "identity"},
                                         {"unigram", true, "identity"},
                                         {"bpe", true, "nmt_nfkc"}};
  json models = json::array();
  std::vector<Tokenizer> toks;
  for (const auto& v : variants) {
    LoadedModel lm;
    lm.tokenizer = Tokenizer::load(testing::tokenizer_variant_dir(v.type, v.prefix, v.norm));
    ModelConfig c = testutil::tiny_config(/*kv_heads=*/2);
    lm.model = testutil::tiny_model(c, 41);
    lm.shape = lm.model->config();
    lm.config = json{{"model", lm.shape.to_json()}};
    HfExportOptions o;
    o.format = "hf-llama";
    o.dtype = "fp32";
    export_hf(lm, out / v.name(), o);
    models.push_back(out / v.name());
    toks.push_back(lm.tokenizer);
  }
  // One finetune and one pretrain string per record, as the client formats them.
  std::vector<std::string> texts;
  std::vector<TemplateKind> kinds;
  std::vector<size_t> record_of;
  for (TemplateKind kind : {TemplateKind::Finetune, TemplateKind::Pretrain}) {
    for (size_t i = 0; i < kRecords.size(); ++i) {
      texts.push_back(
          format_client_text(toks[0], kind, kRecords[i][0], kRecords[i][1], kRecords[i][2]));
      kinds.push_back(kind);
      record_of.push_back(i);
    }
  }
  // Every variant names its pieces alike (<|reward|>, <|reward_token|>), so one text list serves.
  for (const auto& t : toks) {
    ASSERT_EQ(t.id_to_piece(t.special().reward_sep), "<|reward|>");
    ASSERT_EQ(t.id_to_piece(t.special().reward), "<|reward_token|>");
  }
  const json ref =
      hftest::run_reference(out.path(), "tokenize", json{{"models", models}, {"texts", texts}});

  for (size_t v = 0; v < variants.size(); ++v) {
    SCOPED_TRACE(variants[v].name());
    const json& r = ref["results"][out / variants[v].name()];
    const Tokenizer& tok = toks[v];
    int auto_mismatches = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      SCOPED_TRACE(texts[i]);
      const auto ids = encode_formatted_text(tok, texts[i]);
      EXPECT_EQ(json(ids), r["sentencepiece"][i]);
      EXPECT_EQ(json(ids), r["sp_backend"][i]);
      const auto& rec = kRecords[record_of[i]];
      const auto group =
          encode_group_text(tok, kinds[i], rec[0], rec[1], {rec[2]}, TemplateLimits{});
      ASSERT_TRUE(group.has_value());
      std::vector<int32_t> seq = group->prefix;
      seq.insert(seq.end(), group->candidates[0].begin(), group->candidates[0].end());
      EXPECT_EQ(seq, ids);
      auto_mismatches += r["auto"][i] != json(ids);
    }
    // transformers' LlamaTokenizer (tokenizers backend) reproduces sentencepiece only for BPE
    // models without a dummy prefix and with identity normalisation (docs/huggingface.md).
    std::cout << "  " << variants[v].name() << ": " << r["auto_class"].get<std::string>()
              << " differs on " << auto_mismatches << " of " << texts.size() << " strings\n";
    if (variants[v].type == "bpe" && !variants[v].prefix) {
      EXPECT_EQ(auto_mismatches, 0);
    }

    // `polar score` on the export == transformers' reward of the joined strings.
    LoadedModel lm = load_model(out / variants[v].name(), torch::kCPU);
    EXPECT_EQ(lm.tokenizer.fingerprint(), tok.fingerprint());
    for (TemplateKind kind : {TemplateKind::Finetune, TemplateKind::Pretrain}) {
      std::vector<ScoringRecord> records;
      for (const auto& rec : kRecords) records.push_back(ScoringRecord{rec[0], rec[1], rec[2], 0});
      ScoreOptions so;
      so.template_kind = kind;
      const auto rewards = score_records(lm, records, so);
      const size_t base = kind == TemplateKind::Finetune ? 0 : kRecords.size();
      double worst = 0;
      for (size_t i = 0; i < records.size(); ++i) {
        const double want = r["rewards"][base + i].get<double>();
        EXPECT_NEAR(rewards[i], want, 1e-4) << template_kind_name(kind) << " record " << i;
        worst = std::max(worst, std::abs(rewards[i] - want));
      }
      std::cout << "  " << variants[v].name() << " " << template_kind_name(kind)
                << ": max |polar score - transformers| = " << worst << "\n";
    }
  }
}

}  // namespace
}  // namespace polar::io
