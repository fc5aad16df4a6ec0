// The response filter of sampled trajectories: each rule on texts made to trigger it (or not),
// with the counts it reports.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "polar/data/response_filter.h"

namespace polar {
namespace {

std::string repeat(const std::string& unit, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += unit;
  return s;
}

TEST(ResponseFilter, LoopsAreCutAfterTheirFirstCopy) {
  const ResponseFilterOptions o;
  const std::string head = "The answer is simple. ";
  // Ten copies of a 17-byte unit and a partial one, as a length-cut loop ends. The loop starts
  // at the space before its first "I" (the space repeats too), so one copy is " I think it is so".
  const std::string looped = head + repeat("I think it is so ", 10) + "I thi";
  EXPECT_EQ(looped.substr(0, loop_cut(looped, o)), head + "I think it is so");
  // A single repeated character (a run of "!") is a loop of period 1.
  const std::string bangs = "Wow" + repeat("!", 80);
  EXPECT_EQ(bangs.substr(0, loop_cut(bangs, o)), "Wow!");
  // Multi-byte characters: the cut never splits one.
  const std::string wide = "\xE5\xA5\xBD" + repeat("\xE5\x93\x88", 40);  // 好 + 哈 x 40
  const size_t cut = loop_cut(wide, o);
  ASSERT_NE(cut, std::string::npos);
  EXPECT_EQ(wide.substr(0, cut), "\xE5\xA5\xBD\xE5\x93\x88");
  // Too few copies or too short a span is no loop; nor is ordinary prose.
  EXPECT_EQ(loop_cut(head + repeat("I think it is so ", 3), o), std::string::npos);
  EXPECT_EQ(loop_cut("ha ha ha ha ha", o), std::string::npos);  // 5 copies but 14 bytes
  EXPECT_EQ(loop_cut("A sentence. Another one, different. And a third that ends.", o),
            std::string::npos);
}

TEST(ResponseFilter, EachRuleIsAppliedAndCounted) {
  const ResponseFilterOptions o;
  ResponseFilterCounts c;
  // Kept as is.
  auto r = filter_response("A full answer.", "stop", o, c);
  EXPECT_TRUE(r.keep);
  EXPECT_EQ(r.text, "A full answer.");
  // Aborted by the server: dropped whatever the text.
  r = filter_response("Half an ans", "abort", o, c);
  EXPECT_FALSE(r.keep);
  EXPECT_EQ(r.dropped, "aborted");
  EXPECT_FALSE(filter_response("x.", "error", o, c).keep);
  // Length-cut: back to the last sentence end ("3.5" is none).
  r = filter_response("First sentence. It costs 3.5 dollars and then", "length", o, c);
  EXPECT_TRUE(r.keep);
  EXPECT_TRUE(r.unfinished_cut);
  EXPECT_EQ(r.text, "First sentence.");
  r = filter_response("\"Is it?\" she asked", "length", o, c);
  EXPECT_EQ(r.text, "\"Is it?\"");
  r = filter_response("line one\nline two unfinis", "length", o, c);
  EXPECT_EQ(r.text, "line one");
  // Length-cut at a sentence end: kept whole, not counted as cut.
  r = filter_response("It ends here.", "length", o, c);
  EXPECT_TRUE(r.keep);
  EXPECT_FALSE(r.unfinished_cut);
  // Length-cut without any sentence end: dropped.
  r = filter_response("no end in sight and", "length", o, c);
  EXPECT_FALSE(r.keep);
  EXPECT_EQ(r.dropped, "unfinished");
  // A loop that hit the length limit: cut at the loop, then back to the sentence end.
  r = filter_response("Done. " + repeat("again and ", 12) + "aga", "length", o, c);
  EXPECT_TRUE(r.keep);
  EXPECT_TRUE(r.loop_truncated);
  EXPECT_EQ(r.text, "Done.");
  // A loop that stopped on its own (finish "stop"): cut at the loop only.
  r = filter_response("Yes " + repeat("no ", 30), "stop", o, c);
  EXPECT_EQ(r.text, "Yes no");
  // Nothing but white space: dropped.
  EXPECT_EQ(filter_response(" \n ", "stop", o, c).dropped, "empty");

  EXPECT_EQ(c.seen, 11);
  EXPECT_EQ(c.aborted_dropped, 2);
  EXPECT_EQ(c.unfinished_cut, 4);  // "First...", "Is it?", "line one", "Done."
  EXPECT_EQ(c.unfinished_dropped, 1);
  EXPECT_EQ(c.loop_truncated, 2);
  EXPECT_EQ(c.empty_dropped, 1);
  EXPECT_EQ(c.kept, 7);
  EXPECT_EQ(c.to_json()["loop_truncated"], 2);

  ResponseFilterOptions strict;
  strict.drop_unfinished = true;
  EXPECT_FALSE(filter_response("One. Two", "length", strict, c).keep);
  ResponseFilterOptions off;
  off.enabled = false;
  EXPECT_EQ(filter_response("Done. " + repeat("again ", 20), "abort", off, c).text,
            "Done. " + repeat("again ", 20));
}

}  // namespace
}  // namespace polar
