// JSONL at the limits: numbers JSON cannot hold, message roles, null categories, empty files,
// and the reason a build produced no groups.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "../tokenizer/tiny_tokenizer.h"
#include "polar/common/error.h"
#include "polar/data/builder.h"
#include "polar/data/records.h"

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace polar {
namespace {

using polar_test::TempDir;
using polar_test::write_text;

const char* kGoodPreference = R"({"prompt":"p","reference":"r","chosen":"a","rejected":"b"})";

std::string preference_error(const TempDir& dir, const std::string& bad) {
  const std::string path = dir.file("p.jsonl");
  write_text(path, std::string(kGoodPreference) + "\n" + bad + "\n");
  try {
    read_preferences(path, false, nullptr);
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), StartsWith(path + ":2: ")) << e.what();
    return e.what();
  }
  return "no error";
}

TEST(RobustRecords, OverflowingNumbersNameFileAndLineAndAreSkippable) {
  TempDir dir;
  const std::string bad =
      R"({"prompt":"p","reference":"r","chosen":"a","rejected":"b","category":1e999999})";
  EXPECT_THAT(preference_error(dir, bad), HasSubstr("invalid JSON"));
  ReadStats stats;
  const auto recs = read_preferences(dir.file("p.jsonl"), true, &stats);
  EXPECT_EQ(recs.size(), 1u);
  EXPECT_EQ(stats.skipped_by_reason["invalid_json"], 1);
}

TEST(RobustRecords, MessageRolesAreChecked) {
  TempDir dir;
  auto with_prompt = [](const std::string& messages) {
    return R"({"prompt":)" + messages + R"(,"reference":"r","chosen":"a","rejected":"b"})";
  };
  EXPECT_THAT(
      preference_error(dir, with_prompt(R"([{"role":"bogus","content":"x"}])")),
      HasSubstr(R"("prompt"[0].role: expected one of system, user, assistant, tool, got "bogus")"));
  EXPECT_THAT(preference_error(dir, with_prompt(R"([{"role":12345,"content":"x"}])")),
              HasSubstr("got 12345"));
  EXPECT_THAT(preference_error(dir, with_prompt(R"([{"role":["user"],"content":"x"}])")),
              HasSubstr(R"(got ["user"])"));
  EXPECT_THAT(preference_error(dir, with_prompt(R"([{"role":null,"content":"x"}])")),
              HasSubstr("got null"));
  EXPECT_EQ(preference_error(dir, with_prompt(R"([{"content":"x"}])")),
            "no error");  // a role is optional
  EXPECT_EQ(preference_error(dir, with_prompt(R"([{"role":"tool","content":"x"}])")), "no error");
}

TEST(RobustRecords, NullCategoryIsRejected) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_text(path, R"({"prompt":"p","policy":"A","response":"r","category":null})"
                   "\n");
  try {
    read_trajectories(path, false, nullptr);
    ADD_FAILURE() << "null category accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + R"(:1: "category": expected a string, got null)"));
  }
  EXPECT_THAT(
      preference_error(
          dir, R"({"prompt":"p","reference":"r","chosen":"a","rejected":"b","category":null})"),
      HasSubstr("got null"));
}

TEST(RobustRecords, EmptyFileIsNamed) {
  TempDir dir;
  for (const char* text : {"", "\n \n\t\n"}) {
    const std::string path = dir.file("empty.jsonl");
    write_text(path, text);
    for (bool skip : {false, true}) {
      try {
        read_preferences(path, skip, nullptr);
        ADD_FAILURE() << "empty file accepted";
      } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), path + ": empty file (expected one JSON object per line)");
      }
    }
  }
}

TEST(RobustRecords, NoGroupsSaysWhichInputAndWhy) {
  TempDir dir;
  PreferenceBuildOptions p;
  p.input = dir.file("bad.jsonl");
  write_text(p.input, "{bad\n[1]\n");
  p.tokenizer = polar_test::tiny_tokenizer_dir();
  p.output = dir.file("out");
  p.skip_invalid = true;
  try {
    build_preference_dataset(p);
    ADD_FAILURE() << "built a dataset from invalid lines only";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("no groups to write: " + p.input +
                                    ": all 2 lines were invalid and skipped"));
  }
  EXPECT_FALSE(fs::exists(p.output));

  PretrainBuildOptions t;
  t.trajectories = {dir.file("one_policy.jsonl")};
  write_text(t.trajectories[0], R"({"prompt":"q","policy":"A","response":"x"})"
                                "\n"
                                R"({"prompt":"q","policy":"A","response":"y"})"
                                "\n");
  t.tokenizer = p.tokenizer;
  t.output = dir.file("out2");
  try {
    build_pretrain_dataset(t);
    ADD_FAILURE() << "built a dataset from one policy";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(t.trajectories[0] +
                                    ": 2 valid records, but no prompt could form a group"));
    EXPECT_THAT(e.what(), HasSubstr("fewer_policies_than_negatives_plus_one"));
  }
  EXPECT_FALSE(fs::exists(t.output));
}

}  // namespace
}  // namespace polar
