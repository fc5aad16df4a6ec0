// The POLAR template: exact token layout of both wrappers and the truncation rules.
#include <gtest/gtest.h>

#include "polar/common/error.h"
#include "polar/tokenizer/formatted_text.h"
#include "polar/tokenizer/template.h"
#include "tiny_tokenizer.h"

namespace polar {
namespace {

using Ids = std::vector<int32_t>;

Ids cat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Ids range(int32_t first, int32_t n) {
  Ids out;
  for (int32_t i = 0; i < n; ++i) out.push_back(first + i);
  return out;
}

class TemplateTest : public ::testing::Test {
 protected:
  const Tokenizer& tok = polar_test::tiny_tokenizer();
  int32_t bos = tok.special().bos, sep = tok.special().reward_sep, rw = tok.special().reward;
  Ids prompt = {100, 101, 102}, ref = {110, 111}, c1 = {120}, c2 = {130, 131};
};

TEST_F(TemplateTest, PretrainLayout) {
  auto g = encode_group(tok, TemplateKind::Pretrain, prompt, ref, {c1, c2}, TemplateLimits{});
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->prefix, (Ids{bos, 100, 101, 102, 110, 111, sep, 100, 101, 102}));
  ASSERT_EQ(g->candidates.size(), 2u);
  EXPECT_EQ(g->candidates[0], (Ids{120, rw}));
  EXPECT_EQ(g->candidates[1], (Ids{130, 131, rw}));
  EXPECT_EQ(g->prompt_tokens_cut, 0);
  EXPECT_EQ(g->response_tokens_cut, 0);
}

TEST_F(TemplateTest, FinetuneLayoutHasNewlines) {
  const Ids nl = tok.encode("\n");
  ASSERT_FALSE(nl.empty());
  auto g = encode_group(tok, TemplateKind::Finetune, prompt, ref, {c1}, TemplateLimits{});
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->prefix, cat({{bos}, prompt, nl, ref, {sep}, prompt, nl}));
  EXPECT_EQ(g->candidates[0], (Ids{120, rw}));
}

TEST_F(TemplateTest, TextVersionGivesTheJoinedStringsIds) {
  TemplateLimits limits;
  auto a = encode_group_text(tok, TemplateKind::Finetune, "What is the capital of China?",
                             "Beijing.", {"Beijing.", "Shanghai."}, limits);
  ASSERT_TRUE(a);
  for (size_t i = 0; i < 2; ++i) {
    Ids seq = cat({a->prefix, a->candidates[i]});
    const std::string cand = i == 0 ? "Beijing." : "Shanghai.";
    EXPECT_EQ(seq, encode_formatted_text(
                       tok, format_client_text(tok, TemplateKind::Finetune,
                                               "What is the capital of China?", "Beijing.", cand)));
  }
  EXPECT_EQ(tok.decode(a->prefix),
            "What is the capital of China?\nBeijing.What is the capital of China?\n");
}

TEST_F(TemplateTest, ResponsesCutOnTheRight) {
  TemplateLimits limits;
  limits.max_response_length = 1;
  auto g = encode_group(tok, TemplateKind::Pretrain, prompt, ref, {c1, c2}, limits);
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->prefix, (Ids{bos, 100, 101, 102, 110, sep, 100, 101, 102}));
  EXPECT_EQ(g->candidates[1], (Ids{130, rw}));
  EXPECT_EQ(g->response_tokens_cut, 2);  // one from the reference, one from c2
  EXPECT_EQ(g->prompt_tokens_cut, 0);
}

TEST_F(TemplateTest, PromptCutFromTheLeftByTheMinimum) {
  const Ids long_prompt = range(200, 10);
  // fixed = bos + ref(2) + sep = 4; longest candidate = 3 (c2 + reward token).
  TemplateLimits limits;
  limits.max_length = 4 + 3 + 2 * 10;  // fits exactly: nothing cut
  auto full = encode_group(tok, TemplateKind::Pretrain, long_prompt, ref, {c1, c2}, limits);
  ASSERT_TRUE(full.has_value());
  EXPECT_EQ(full->prompt_tokens_cut, 0);
  EXPECT_EQ(static_cast<int64_t>(full->prefix.size() + 3), limits.max_length);

  limits.max_length = 4 + 3 + 2 * 4 + 1;  // room for 4.5 prompt tokens per copy -> keep 4
  auto cut = encode_group(tok, TemplateKind::Pretrain, long_prompt, ref, {c1, c2}, limits);
  ASSERT_TRUE(cut.has_value());
  EXPECT_EQ(cut->prompt_tokens_cut, 6);
  EXPECT_EQ(cut->prefix, (Ids{bos, 206, 207, 208, 209, 110, 111, sep, 206, 207, 208, 209}));
  EXPECT_LE(static_cast<int64_t>(cut->prefix.size() + cut->candidates[1].size()),
            limits.max_length);

  // Finetune: two "\n" copies also count.
  const int64_t nl = static_cast<int64_t>(tok.encode("\n").size());
  limits.max_length = 4 + 2 * nl + 3 + 2 * 7;
  auto ft = encode_group(tok, TemplateKind::Finetune, long_prompt, ref, {c1, c2}, limits);
  ASSERT_TRUE(ft.has_value());
  EXPECT_EQ(ft->prompt_tokens_cut, 3);
  EXPECT_EQ(static_cast<int64_t>(ft->prefix.size() + 3), limits.max_length);
}

TEST_F(TemplateTest, NulloptWhenEvenAnEmptyPromptDoesNotFit) {
  TemplateLimits limits;
  limits.max_length = 4 + 3;  // exactly fits with no prompt at all
  auto empty_prompt =
      encode_group(tok, TemplateKind::Pretrain, range(200, 10), ref, {c1, c2}, limits);
  ASSERT_TRUE(empty_prompt.has_value());
  EXPECT_EQ(empty_prompt->prompt_tokens_cut, 10);
  EXPECT_EQ(empty_prompt->prefix, (Ids{bos, 110, 111, sep}));
  limits.max_length = 4 + 3 - 1;
  EXPECT_FALSE(
      encode_group(tok, TemplateKind::Pretrain, range(200, 10), ref, {c1, c2}, limits).has_value());
  EXPECT_FALSE(encode_group(tok, TemplateKind::Pretrain, {}, ref, {c1, c2}, limits).has_value());
}

TEST_F(TemplateTest, BadArguments) {
  EXPECT_THROW(encode_group(tok, TemplateKind::Pretrain, prompt, ref, {}, TemplateLimits{}), Error);
  TemplateLimits limits;
  limits.max_response_length = 0;
  EXPECT_THROW(encode_group(tok, TemplateKind::Pretrain, prompt, ref, {c1}, limits), Error);
  EXPECT_EQ(parse_template_kind("pretrain"), TemplateKind::Pretrain);
  EXPECT_EQ(parse_template_kind("finetune"), TemplateKind::Finetune);
  EXPECT_STREQ(template_kind_name(TemplateKind::Finetune), "finetune");
  EXPECT_THROW(parse_template_kind("chat"), Error);
}

}  // namespace
}  // namespace polar
