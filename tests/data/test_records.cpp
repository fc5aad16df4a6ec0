// JSONL readers: accepted shapes, FILE:LINE messages for each kind of bad line, skip counts.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "../tokenizer/tiny_tokenizer.h"
#include "polar/common/error.h"
#include "polar/data/records.h"

namespace polar {
namespace {

using polar_test::TempDir;
using polar_test::write_text;

const char* kGood = R"({"prompt":"p","policy":"A","response":"r"})";

// The error raised by a file whose line 3 is `bad` (line 1 good, line 2 blank).
std::string error_for(const TempDir& dir, const std::string& bad) {
  const std::string path = dir.file("t.jsonl");
  write_text(path, std::string(kGood) + "\n\n" + bad + "\n" + kGood + "\n");
  try {
    read_trajectories(path, false, nullptr);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(RecordsTest, ReadsStringsMessagesExtrasAndBlankLines) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_text(
      path,
      "\n"
      R"({"prompt":"What?","policy":"m1","response":"Yes.","category":"math","extra":{"x":[1,2]}})"
      "\n   \r\n"
      R"({"prompt":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],)"
      R"("policy":"m2","response":[{"role":"assistant","content":"Hello"}]})"
      "\r\n");
  ReadStats stats;
  const auto recs = read_trajectories(path, false, &stats);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].prompt, "What?");
  EXPECT_EQ(recs[0].category, "math");
  EXPECT_EQ(recs[0].line, 2);
  EXPECT_EQ(recs[1].prompt, "Be brief.\nHi");
  EXPECT_EQ(recs[1].response, "Hello");
  EXPECT_EQ(recs[1].category, "default");
  EXPECT_EQ(recs[1].line, 4);
  EXPECT_EQ(stats.lines, 2);
  EXPECT_EQ(stats.accepted, 2);
  EXPECT_EQ(stats.skipped, 0);
}

TEST(RecordsTest, EachBadLineNamesFileLineAndProblem) {
  TempDir dir;
  const std::string where = dir.file("t.jsonl") + ":3: ";
  struct Case {
    std::string line, expected;
  };
  const std::vector<Case> cases = {
      {R"({"prompt":"p","policy":"A",)", "invalid JSON"},
      {R"({"prompt":"p","policy":"A"})",
       R"(missing field "response" (expected a string or a messages list))"},
      {R"({"prompt":"p","policy":"A","response":null})", R"(missing field "response")"},
      {R"({"prompt":"p","policy":7,"response":"r"})", R"("policy": expected a string, got number)"},
      {R"({"prompt":"p","policy":"A","response":3})",
       R"("response": expected a string or a messages list, got number)"},
      {R"({"prompt":"p","policy":"A","response":""})", R"("response": empty text)"},
      {R"({"prompt":[],"policy":"A","response":"r"})", R"("prompt": empty messages list)"},
      {"{\"prompt\":\"p\xff\",\"policy\":\"A\",\"response\":\"r\"}", "invalid UTF-8 at byte 13"},
      {R"({"prompt":[{"role":"user"}],"policy":"A","response":"r"})",
       R"("prompt"[0]: message has no "content")"},
      {R"({"prompt":[{"role":"user","content":"a"},{"content":5}],"policy":"A","response":"r"})",
       R"("prompt"[1].content: expected a string, got number)"},
      {R"({"prompt":["hi"],"policy":"A","response":"r"})",
       R"("prompt"[0]: expected a message object)"},
      {R"(["p","A","r"])", "expected a JSON object, got array"},
      {R"({"prompt":"p","policy":"A","response":"r","category":1})",
       R"("category": expected a string, got number)"},
  };
  for (const auto& c : cases) {
    const std::string msg = error_for(dir, c.line);
    EXPECT_EQ(msg.rfind(where, 0), 0u) << msg;
    EXPECT_NE(msg.find(c.expected), std::string::npos)
        << "line: " << c.line << "\nmessage: " << msg;
  }
}

TEST(RecordsTest, SkipInvalidCountsByReason) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_text(path, std::string(kGood) + "\n" +
                       "{bad json\n"
                       R"({"prompt":"p","policy":"A"})"
                       "\n"
                       R"({"prompt":"p","policy":"A","response":""})"
                       "\n"
                       R"({"prompt":"p","policy":"A","response":[{"role":"x"}]})"
                       "\n"
                       "{\"prompt\":\"\xc0\xaf\",\"policy\":\"A\",\"response\":\"r\"}\n"
                       R"({"prompt":"p","policy":["A"],"response":"r"})"
                       "\n\n" +
                       kGood + "\n");
  ReadStats stats;
  stats.lines = 10;  // readers add to the given stats
  const auto recs = read_trajectories(path, true, &stats);
  EXPECT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[1].line, 9);
  EXPECT_EQ(stats.lines, 18);
  EXPECT_EQ(stats.accepted, 2);
  EXPECT_EQ(stats.skipped, 6);
  const std::map<std::string, int64_t> expected = {{"invalid_json", 1}, {"missing_field", 1},
                                                   {"empty_text", 1},   {"bad_messages", 1},
                                                   {"invalid_utf8", 1}, {"wrong_type", 1}};
  EXPECT_EQ(stats.skipped_by_reason, expected);
  const auto j = stats.to_json();
  EXPECT_EQ(j["skipped_by_reason"]["invalid_json"], 1);
  EXPECT_EQ(j["accepted"], 2);
}

TEST(RecordsTest, PreferenceAndScoringReaders) {
  TempDir dir;
  write_text(
      dir.file("pref.jsonl"),
      R"({"prompt":[{"role":"user","content":"Q"}],"reference":"A","chosen":"B","rejected":[{"role":"assistant","content":"C"}],"category":"chat"})"
      "\n"
      R"({"prompt":"Q","reference":"A","chosen":"B"})"
      "\n");
  ReadStats stats;
  const auto prefs = read_preferences(dir.file("pref.jsonl"), true, &stats);
  ASSERT_EQ(prefs.size(), 1u);
  EXPECT_EQ(prefs[0].prompt, "Q");
  EXPECT_EQ(prefs[0].rejected, "C");
  EXPECT_EQ(prefs[0].category, "chat");
  EXPECT_EQ(stats.skipped_by_reason.at("missing_field"), 1);
  try {
    read_preferences(dir.file("pref.jsonl"), false, nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pref.jsonl:2: missing field \"rejected\""),
              std::string::npos)
        << e.what();
  }

  write_text(dir.file("score.jsonl"), R"({"prompt":"Q","reference":"A","output":"B","id":3})"
                                      "\n"
                                      R"({"prompt":"Q","reference":"A"})"
                                      "\n");
  const auto scores = read_scoring(dir.file("score.jsonl"), true, nullptr);
  ASSERT_EQ(scores.size(), 1u);
  EXPECT_EQ(scores[0].output, "B");
  EXPECT_THROW(read_scoring(dir.file("score.jsonl"), false, nullptr), Error);
  EXPECT_THROW(read_scoring(dir.file("missing.jsonl"), true, nullptr), Error);
}

TEST(RecordsTest, RenderTextFieldUsesWhere) {
  EXPECT_EQ(render_text_field(nlohmann::json::parse(R"([{"content":"a"},{"content":"b"}])"), "x"),
            "a\nb");
  try {
    render_text_field(nlohmann::json(5), "request.prompt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("request.prompt: expected a string", 0), 0u) << e.what();
  }
}

TEST(RecordsTest, Utf8Validation) {
  size_t bad = 99;
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("ab\xc0\x80", &bad));  // overlong NUL
  EXPECT_EQ(bad, 2u);
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // UTF-16 surrogate
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(is_valid_utf8("x\xe2\x82", &bad));   // truncated
  EXPECT_EQ(bad, 1u);
  EXPECT_FALSE(is_valid_utf8("\x80"));                  // stray continuation byte
  EXPECT_FALSE(is_valid_utf8("\xf8\x88\x80\x80\x80"));  // 5-byte form
}

}  // namespace
}  // namespace polar
