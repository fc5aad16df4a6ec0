// Token ids of a record equal the ids of the one joined string POLAR's client sends
// (encode_formatted_text), for sentencepiece models with and without a dummy prefix, BPE and
// unigram, identity and NFKC normalisation; and the truncation boundaries. The same ids are
// checked against the sentencepiece Python package and transformers in
// tests/checkpoint/test_hf_tokenization.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "common/tiny_data.h"
#include "polar/tokenizer/formatted_text.h"
#include "polar/tokenizer/template.h"

namespace polar {
namespace {

using Ids = std::vector<int32_t>;
using Triple = std::array<std::string, 3>;  // prompt, reference, candidate

// Texts that start with spaces, newlines, digits, non-ASCII and emoji, end with spaces or
// newlines, and contain special-token strings.
const std::vector<Triple>& triples() {
  static const std::vector<Triple> t = {
      {"What is the capital of China?", "Beijing.", "Shanghai."},
      {" leading space", "  two spaces", "\nnewline first"},
      {"123 count", "45 yes", "6"},
      {"北京是中国的首都吗？", "是的。", "不是"},
      {"😀 emoji", "🚀", "😀😀 sea"},
      {"the sea\n", "\n\nsky", " tree "},
      {"tab\there", "café naïve", "Å"},
      {"x </s> y", "<s> sky", "a<|reward|>b"},
      {"the capi", "tal of China", "tol is"},  // a pre-training prefix cut mid-word
  };
  return t;
}

struct Variant {
  std::string type;
  bool prefix;
  std::string norm;
};

const std::vector<Variant>& variants() {
  static const std::vector<Variant> v = {{"bpe", false, "identity"},
                                         {"bpe", true, "identity"},
                                         {"unigram", false, "identity"},
                                         {"unigram", true, "identity"},
                                         {"bpe", true, "nmt_nfkc"}};
  return v;
}

Ids sequence(const EncodedGroup& g, size_t i) {
  Ids out = g.prefix;
  out.insert(out.end(), g.candidates[i].begin(), g.candidates[i].end());
  return out;
}

// What polar did before: every field tokenised on its own and the ids joined.
Ids field_by_field(const Tokenizer& tok, TemplateKind kind, const Triple& t) {
  const SpecialTokens& s = tok.special();
  const Ids sep = kind == TemplateKind::Finetune ? tok.encode("\n") : Ids{};
  Ids out{s.bos};
  for (const Ids& part : {tok.encode(t[0]), sep, tok.encode(t[1])})
    out.insert(out.end(), part.begin(), part.end());
  out.push_back(s.reward_sep);
  for (const Ids& part : {tok.encode(t[0]), sep, tok.encode(t[2])})
    out.insert(out.end(), part.begin(), part.end());
  out.push_back(s.reward);
  return out;
}

TEST(JoinedText, RecordIdsEqualTheJoinedStringsIds) {
  for (const Variant& v : variants()) {
    const Tokenizer tok = Tokenizer::load(testing::tokenizer_variant_dir(v.type, v.prefix, v.norm));
    int field_by_field_differs = 0;
    for (TemplateKind kind : {TemplateKind::Finetune, TemplateKind::Pretrain}) {
      for (const Triple& t : triples()) {
        SCOPED_TRACE(testing::tokenizer_variant_name(v.type, v.prefix, v.norm) + " " +
                     template_kind_name(kind) + " prompt=" + t[0]);
        // Two candidates share one prefix: each sequence must still be exact.
        const auto g = encode_group_text(tok, kind, t[0], t[1], {t[2], t[1]}, TemplateLimits{});
        ASSERT_TRUE(g.has_value());
        EXPECT_EQ(g->prompt_tokens_cut + g->response_tokens_cut, 0);
        EXPECT_EQ(sequence(*g, 0),
                  encode_formatted_text(tok, format_client_text(tok, kind, t[0], t[1], t[2])));
        EXPECT_EQ(sequence(*g, 1),
                  encode_formatted_text(tok, format_client_text(tok, kind, t[0], t[1], t[1])));
        field_by_field_differs += field_by_field(tok, kind, t) != sequence(*g, 0);
      }
    }
    std::cout << "  " << testing::tokenizer_variant_name(v.type, v.prefix, v.norm)
              << ": field-by-field ids differ on " << field_by_field_differs << " of "
              << 2 * triples().size() << " records\n";
    // Not vacuous: with a dummy prefix or NFKC the old field-by-field ids were wrong somewhere.
    if (v.prefix || v.norm != "identity") EXPECT_GT(field_by_field_differs, 0) << v.type;
  }
}

TEST(JoinedText, FormattedTextSplitsSpecialPiecesAndStartsWithBos) {
  const Tokenizer tok = Tokenizer::load(testing::tokenizer_variant_dir("bpe", true));
  const SpecialTokens& s = tok.special();
  const Ids ids = encode_formatted_text(tok, "a<|reward|>b</s><|reward_token|>");
  ASSERT_GE(ids.size(), 6u);
  EXPECT_EQ(ids.front(), s.bos);
  EXPECT_EQ(ids.back(), s.reward);
  EXPECT_EQ(ids[ids.size() - 2], s.eos);
  EXPECT_NE(std::find(ids.begin(), ids.end(), s.reward_sep), ids.end());
  // Plain sentencepiece encoding would spell the control pieces out as text.
  const Ids plain = tok.encode("a<|reward|>b");
  EXPECT_EQ(std::find(plain.begin(), plain.end(), s.reward_sep), plain.end());
  // The dummy prefix starts every run between special pieces, as sentencepiece per run does.
  Ids runs{s.bos};
  for (const Ids& part :
       {tok.encode("a"), Ids{s.reward_sep}, tok.encode("b"), Ids{s.eos, s.reward}})
    runs.insert(runs.end(), part.begin(), part.end());
  EXPECT_EQ(ids, runs);
  EXPECT_EQ(encode_formatted_text(tok, ""), Ids{s.bos});
}

class JoinedTruncation : public ::testing::Test {
 protected:
  Tokenizer tok = Tokenizer::load(testing::tokenizer_variant_dir("bpe", true));
  std::string prompt = "how many trees are in the sea 123 456",
              reference = "Beijing is the capital", candidate = "the sky and the sea";
  Ids full_ids = encode_formatted_text(
      tok, format_client_text(tok, TemplateKind::Finetune, prompt, reference, candidate));
  std::optional<EncodedGroup> encode(const TemplateLimits& limits) {
    return encode_group_text(tok, TemplateKind::Finetune, prompt, reference, {candidate}, limits);
  }
};

TEST_F(JoinedTruncation, ExactFitCutsNothingOneLessCutsOnePromptTokenPerCopy) {
  TemplateLimits limits;
  limits.max_length = static_cast<int64_t>(full_ids.size());
  auto g = encode(limits);
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(sequence(*g, 0), full_ids);
  EXPECT_EQ(g->prompt_tokens_cut, 0);

  limits.max_length -= 1;  // the prompt appears twice: cutting one token per copy frees two
  g = encode(limits);
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->prompt_tokens_cut, 1);
  EXPECT_EQ(g->response_tokens_cut, 0);
  const Ids cut = sequence(*g, 0);
  EXPECT_EQ(cut.size(), full_ids.size() - 2);
  // The first prompt token of each copy is gone: after bos, and after <|reward|>.
  Ids expected = full_ids;
  const auto sep_at =
      std::find(expected.begin(), expected.end(), tok.special().reward_sep) - expected.begin();
  expected.erase(expected.begin() + sep_at + 1);
  expected.erase(expected.begin() + 1);
  EXPECT_EQ(cut, expected);
}

TEST_F(JoinedTruncation, ResponsesCutOnTheRightAtTheLimit) {
  const auto g0 = encode(TemplateLimits{});
  ASSERT_TRUE(g0.has_value());
  const int64_t cand_tokens =
      static_cast<int64_t>(g0->candidates[0].size()) - 1;  // without the reward token
  TemplateLimits limits;
  limits.max_response_length = cand_tokens;  // exactly the candidate's length: nothing cut from it
  auto g = encode(limits);
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->candidates[0], g0->candidates[0]);
  limits.max_response_length = cand_tokens - 1;
  g = encode(limits);
  ASSERT_TRUE(g.has_value());
  Ids want(g0->candidates[0].begin(),
           g0->candidates[0].end() - 2);  // last token and the reward token
  want.push_back(tok.special().reward);
  EXPECT_EQ(g->candidates[0], want);
  EXPECT_GE(g->response_tokens_cut, 1);
  EXPECT_EQ(g->prompt_tokens_cut, 0);
}

TEST_F(JoinedTruncation, TooLongEvenWithoutThePromptIsDropped) {
  // Lower max_length one token at a time: the prompt is cut until none is left, then the group
  // no longer fits and is dropped.
  TemplateLimits limits;
  limits.max_length = static_cast<int64_t>(full_ids.size());
  std::optional<EncodedGroup> smallest;
  while (auto g = encode(limits)) {
    EXPECT_LE(static_cast<int64_t>(sequence(*g, 0).size()), limits.max_length);
    smallest = std::move(g);
    limits.max_length -= 1;
  }
  ASSERT_TRUE(smallest.has_value());
  const Ids last = sequence(*smallest, 0);
  EXPECT_GE(smallest->prompt_tokens_cut, 5);
  EXPECT_EQ(last.size(), full_ids.size() - 2 * static_cast<size_t>(smallest->prompt_tokens_cut));
  EXPECT_EQ(smallest->response_tokens_cut, 0);
  // What is left is bos, then the reference's run (no prompt token), ..., the candidate's run.
  EXPECT_EQ(
      Ids(last.end() - static_cast<std::ptrdiff_t>(smallest->candidates[0].size()), last.end()),
      smallest->candidates[0]);
}

}  // namespace
}  // namespace polar
