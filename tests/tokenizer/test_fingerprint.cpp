// Tokenizer fingerprints: stable across save/load, different for another model or other special
// ids, checked against the one saved in polar_tokenizer.json, and refused by name on mismatch.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "common/tiny_data.h"
#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/tokenizer/tokenizer.h"

namespace polar {
namespace {

namespace fs = std::filesystem;

TEST(TokenizerFingerprint, StableAcrossSaveAndLoadAndDistinct) {
  testing::TempDir tmp;
  const Tokenizer a = Tokenizer::load(testing::tiny_tokenizer_dir());
  EXPECT_EQ(a.fingerprint().rfind("sha256:", 0), 0u);
  EXPECT_EQ(a.fingerprint().size(), 7u + 64u);
  EXPECT_EQ(a.short_fingerprint(), a.fingerprint().substr(7, 12));
  a.save(tmp / "copy");
  const Tokenizer copy = Tokenizer::load(tmp / "copy");
  EXPECT_EQ(copy.fingerprint(), a.fingerprint());
  EXPECT_EQ(read_json_file(tmp / "copy/polar_tokenizer.json")["fingerprint"], a.fingerprint());
  const Tokenizer other = Tokenizer::load(testing::tokenizer_variant_dir("bpe", true));
  EXPECT_NE(other.fingerprint(), a.fingerprint());
}

TEST(TokenizerFingerprint, SpecialIdsArePartOfIt) {
  testing::TempDir tmp;
  const Tokenizer a = Tokenizer::load(testing::tiny_tokenizer_dir());
  a.save(tmp / "t");
  nlohmann::json j = read_json_file(tmp / "t/polar_tokenizer.json");
  j.erase("fingerprint");
  j["reward"] = a.special().eos;  // another reward id: other ids for the same text
  write_json_file_atomic(tmp / "t/polar_tokenizer.json", j);
  EXPECT_NE(Tokenizer::load(tmp / "t").fingerprint(), a.fingerprint());
}

TEST(TokenizerFingerprint, FileWithoutFingerprintLoadsAndTamperingIsRefused) {
  testing::TempDir tmp;
  const Tokenizer a = Tokenizer::load(testing::tiny_tokenizer_dir());
  a.save(tmp / "t");
  nlohmann::json j = read_json_file(tmp / "t/polar_tokenizer.json");
  j.erase("fingerprint");  // as written before fingerprints existed
  write_json_file_atomic(tmp / "t/polar_tokenizer.json", j);
  EXPECT_EQ(Tokenizer::load(tmp / "t").fingerprint(), a.fingerprint());

  a.save(tmp / "u");
  fs::copy_file(testing::tokenizer_variant_dir("bpe", true) + "/tokenizer.model",
                tmp / "u/tokenizer.model", fs::copy_options::overwrite_existing);
  try {
    Tokenizer::load(tmp / "u");
    FAIL() << "a replaced tokenizer.model was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("polar_tokenizer.json: fingerprint"), std::string::npos)
        << e.what();
  }
}

TEST(TokenizerFingerprint, RequireSameTokenizerNamesBoth) {
  const Tokenizer a = Tokenizer::load(testing::tiny_tokenizer_dir());
  const Tokenizer b = Tokenizer::load(testing::tokenizer_variant_dir("unigram", false));
  EXPECT_NO_THROW(require_same_tokenizer(a, "weights W",
                                         Tokenizer::load(testing::tiny_tokenizer_dir()), "data D"));
  try {
    require_same_tokenizer(a, "weights W", b, "data D");
    FAIL() << "different tokenizers were accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const std::string& part :
         {std::string("weights W"), std::string("data D"), a.short_fingerprint(),
          b.short_fingerprint(), a.source(), b.source()})
      EXPECT_NE(m.find(part), std::string::npos) << part << " missing in: " << m;
  }
}

}  // namespace
}  // namespace polar
