// The tokenizer.json backend against the `tokenizers` library (tests/tokenizer/
// hf_tokenizers_reference.py): ids of 100k generated strings per tokenizer and the decode text of
// random ids, for byte-level BPEs with the Llama 3, Qwen2 (NFC) and GPT-2 (add_prefix_space)
// patterns, Metaspace BPEs with byte fallback (prepend_scheme first / always + NFKC, and Llama
// 2's Prepend+Replace normalizer), and SmolLM2's real tokenizer.json. Then POLAR's template
// tokens on such tokenizers, checked against the library on the client's joined strings. The
// Python parts skip without the venv's `tokenizers`; the hand-written ones always run.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "polar/common/error.h"
#include "polar/common/json_config.h"
#include "polar/tokenizer/formatted_text.h"
#include "polar/tokenizer/template.h"
#include "polar/tokenizer/tokenizer.h"
#include "tokenizer/tiny_tokenizer.h"

namespace polar {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const char* kPython = POLAR_SOURCE_DIR "/.venv/bin/python";
const char* kScript = POLAR_SOURCE_DIR "/tests/tokenizer/hf_tokenizers_reference.py";

// Runs the reference script; its exit status (2: a package is missing).
int run_reference(const std::string& args, const std::string& out_file) {
  if (!fs::exists(kPython)) return 2;
  const std::string cmd = std::string(kPython) + " " + kScript + " " + args + " > " + out_file;
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// The reference tokenizers and cases, made once per test process.
struct Reference {
  polar_test::TempDir dir;
  int rc = -1;
  json summary;
};
const Reference& reference() {
  static Reference* ref = [] {
    auto* r = new Reference;
    r->rc = run_reference("make " + r->dir.path() + " --strings 100000 --seed 1234",
                          r->dir.file("summary.json"));
    if (r->rc == 0) r->summary = read_json_file(r->dir.file("summary.json"));
    return r;
  }();
  return *ref;
}

#define SKIP_WITHOUT_REFERENCE()                                                               \
  if (reference().rc == 2) GTEST_SKIP() << kPython << " or the tokenizers package is missing"; \
  ASSERT_EQ(reference().rc, 0) << "hf_tokenizers_reference.py make failed"

std::string show_ids(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids)
    s += std::to_string(id) + json(id < tok.vocab_size() ? tok.id_to_piece(id) : "?").dump() + " ";
  return s;
}

// GPT-2's ByteLevel alphabet back to bytes: the raw bytes of a byte-level piece.
std::string byte_level_bytes(const std::string& piece) {
  static const std::map<uint32_t, char> table = [] {
    std::map<uint32_t, char> t;
    uint32_t n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool direct = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[direct ? static_cast<uint32_t>(b) : 256 + n++] = static_cast<char>(b);
    }
    return t;
  }();
  std::string out;
  for (size_t i = 0; i < piece.size();) {
    const auto c = static_cast<unsigned char>(piece[i]);
    const size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t cp = len == 1 ? c : c & (0xFF >> (len + 1));
    for (size_t k = 1; k < len; ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(piece[i + k]) & 0x3F);
    auto it = table.find(cp);
    if (it == table.end()) return piece;  // an added token: its text as it is
    out += it->second;
    i += len;
  }
  return out;
}

TEST(HfJsonTokenizer, IdsAndDecodeMatchTokenizersLibrary) {
  SKIP_WITHOUT_REFERENCE();
  const json& s = reference().summary;
  for (const auto& [name, why] : s["skipped"].items())
    std::cout << "[ note ] " << name << " not checked: " << why.get<std::string>() << "\n";
  ASSERT_GE(s["tokenizers"].size(), 6u);
  for (const auto& name_json : s["tokenizers"]) {
    const std::string name = name_json.get<std::string>();
    const std::string dir = reference().dir.file(name);
    SCOPED_TRACE(name);
    const Tokenizer tok = Tokenizer::load_base(dir);
    EXPECT_STREQ(tok.backend_name(), "tokenizer.json");
    std::set<int32_t> added;
    for (const auto& p : tok.special_pieces()) added.insert(p.second);
    std::ifstream cases(dir + "/cases.jsonl");
    std::string line;
    size_t n = 0, bad = 0, tokens = 0;
    while (std::getline(cases, line)) {
      const json c = json::parse(line);
      const std::string text = c[0].get<std::string>();
      const auto want = c[1].get<std::vector<int32_t>>();
      const auto got = encode_formatted_text(tok, text);
      ++n;
      tokens += got.size();
      if (got != want && ++bad <= 3) {
        ADD_FAILURE() << name << ": " << json(text).dump() << "\n polar " << show_ids(tok, got)
                      << "\n tokenizers " << show_ids(tok, want);
      }
      // Ends: nondecreasing, within the text, the last special-free run ending at its end.
      std::vector<int32_t> ids;
      std::vector<size_t> ends;
      tok.encode_split_specials(text, ids, ends);
      ASSERT_EQ(ids.size(), ends.size());
      for (size_t i = 0; i < ends.size(); ++i) {
        ASSERT_LE(ends[i], text.size());
        if (i) ASSERT_GE(ends[i], ends[i - 1]);
      }
      ASSERT_TRUE(ends.empty() || ends.back() == text.size() || name != "smollm2");
      // Without a normalizer or prefix, each byte-level token covers exactly its own bytes.
      if (name == "smollm2" || name == "llama3_bpe") {
        size_t at = 0;
        for (size_t i = 0; i < ids.size(); ++i) {
          const std::string covered = text.substr(at, ends[i] - at),
                            piece = tok.id_to_piece(ids[i]);
          if (added.count(ids[i])) {  // lstrip/rstrip tokens also cover the spaces beside them
            ASSERT_NE(covered.find(piece), std::string::npos) << json(text).dump();
          } else {
            ASSERT_EQ(covered, byte_level_bytes(piece)) << json(text).dump() << " token " << i;
          }
          at = ends[i];
        }
      }
    }
    EXPECT_GE(n, 100000u);
    EXPECT_EQ(bad, 0u) << name << ": " << bad << " of " << n << " strings differ";
    std::ifstream decodes(dir + "/decode.jsonl");
    size_t dn = 0, dbad = 0;
    while (std::getline(decodes, line)) {
      const json c = json::parse(line);
      const std::string got = tok.decode(c[0].get<std::vector<int32_t>>());
      ++dn;
      if (got != c[1].get<std::string>() && ++dbad <= 3)
        ADD_FAILURE() << name << ": decode " << c[0].dump() << "\n polar " << json(got).dump()
                      << "\n tokenizers " << c[1].dump();
    }
    EXPECT_GE(dn, 1000u);
    EXPECT_EQ(dbad, 0u);
    std::cout << "[ info ] " << name << ": " << n << " strings (" << tokens << " tokens), " << dn
              << " decodes equal the tokenizers library's\n";
  }
}

// Llama 3 style (reserved tokens), Qwen style (spare embedding rows), SmolLM2 style (nothing
// spare: new tokens, the embedding grows): the client's joined strings get the same ids from
// polar and from the library reading the tokenizer.json polar saved.
TEST(HfJsonTokenizer, PolarTemplateTokensMatchTokenizersLibrary) {
  SKIP_WITHOUT_REFERENCE();
  polar_test::TempDir tmp;
  struct Case {
    std::string name;
    int64_t extra_rows;  // model rows beyond the tokenizer's
    std::string how;
  };
  const std::vector<Case> cases = {{"llama3_bpe", 0, "reserved"},
                                   {"qwen2_bpe", 16, "spare_rows"},
                                   {"gpt2_prefix_bpe", 0, "added"},
                                   {"metaspace_first_bpe", 0, "added"},
                                   {"smollm2", 0, "added"}};
  const std::vector<std::array<std::string, 3>> records = {
      {"What is the capital of China?", "Beijing.", "Shanghai."},
      {" leading space", "  two spaces", "\nnewline first"},
      {"123 count", "45 yes", "6 7"},
      {"北京是中国的首都吗？", "是的。", "不是"},
      {"😀 emoji", "🚀", "😀😀 sea"},
      {"the sea\n", "\n\nsky", " tree <|reward|> "},
      {"tab\there", "café naïve", "Å 9 <tool> x"}};
  for (const auto& c : cases) {
    const std::string src = reference().dir.file(c.name);
    if (!fs::exists(src + "/tokenizer.json")) continue;  // SmolLM2 without its package
    SCOPED_TRACE(c.name);
    const Tokenizer base = Tokenizer::load_base(src);
    EXPECT_THROW(Tokenizer::load(src), Error);  // no template tokens yet
    const TemplateTokenChoice choice = choose_polar_tokens(base, base.vocab_size() + c.extra_rows);
    EXPECT_EQ(choice.how, c.how) << choice.description;
    std::cout << "[ info ] " << c.name << ": " << choice.description << "\n";
    const Tokenizer tok = with_polar_tokens(base, choice);
    EXPECT_EQ(tok.id_to_piece(tok.special().reward_sep), "<|reward|>");
    EXPECT_EQ(tok.id_to_piece(tok.special().reward), "<|reward_token|>");
    if (c.how == "added") {
      EXPECT_EQ(choice.embedding_rows, base.vocab_size() + 2);
      EXPECT_EQ(tok.vocab_size(), base.vocab_size() + 2);
    } else {
      EXPECT_EQ(choice.embedding_rows, base.vocab_size() + c.extra_rows);
    }
    const std::string dir = tmp.file(c.name);
    tok.save(dir);
    const Tokenizer loaded = Tokenizer::load(dir);
    EXPECT_EQ(loaded.fingerprint(), tok.fingerprint());
    EXPECT_EQ(loaded.template_choice().how, c.how);
    EXPECT_EQ(loaded.special().reward, tok.special().reward);
    EXPECT_NE(loaded.fingerprint(), Tokenizer::load_base(src).fingerprint());

    json strings = json::array();
    for (const auto& kind : {TemplateKind::Finetune, TemplateKind::Pretrain})
      for (const auto& r : records)
        strings.push_back(format_client_text(loaded, kind, r[0], r[1], r[2]));
    polar_test::write_text(tmp.file(c.name + ".strings.json"), strings.dump());
    ASSERT_EQ(run_reference("encode " + dir + " " + tmp.file(c.name + ".strings.json") + " " +
                                tmp.file(c.name + ".ids.json"),
                            "/dev/null"),
              0);
    const json want = read_json_file(tmp.file(c.name + ".ids.json"));
    size_t k = 0;
    for (const auto& kind : {TemplateKind::Finetune, TemplateKind::Pretrain}) {
      for (const auto& r : records) {
        const auto lib = want[k].get<std::vector<int32_t>>();
        EXPECT_EQ(encode_formatted_text(loaded, strings[k].get<std::string>()), lib)
            << strings[k].dump();
        const auto group = encode_group_text(loaded, kind, r[0], r[1], {r[2]}, TemplateLimits{});
        ASSERT_TRUE(group.has_value());
        std::vector<int32_t> seq = group->prefix;
        seq.insert(seq.end(), group->candidates[0].begin(), group->candidates[0].end());
        EXPECT_EQ(seq, lib) << strings[k].dump() << "\n polar " << show_ids(loaded, seq);
        EXPECT_EQ(seq.back(), loaded.special().reward);
        ++k;
      }
    }
  }
}

// A hand-written tokenizer.json: merges by rank, a bos from TemplateProcessing, added tokens
// split out, directory probing, save/load, and every unsupported component named by its path.
std::string tiny_json(const std::string& pre_tokenizer = R"({"type": "ByteLevel",
    "add_prefix_space": false, "trim_offsets": true, "use_regex": true})",
                      const std::string& model_type = "BPE") {
  json vocab = json::object();
  const auto& add = [&](const std::string& t) { vocab[t] = static_cast<int>(vocab.size()); };
  add("<s>");
  for (const char* t : {"a", "b", "c", "\xc4\xa0"}) add(t);  // "\xc4\xa0" is "Ġ", a space
  for (const char* t : {"ab", "abc",
                        "\xc4\xa0"
                        "a",
                        "\xc4\xa0"
                        "ab",
                        "<", "s", ">"})
    add(t);
  json j = {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens",
             {{{"id", 0},
               {"content", "<s>"},
               {"single_word", false},
               {"lstrip", false},
               {"rstrip", false},
               {"normalized", false},
               {"special", true}}}},
            {"normalizer", nullptr},
            {"pre_tokenizer", json::parse(pre_tokenizer)},
            {"post_processor",
             {{"type", "TemplateProcessing"},
              {"single",
               {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
              {"pair", json::array()},
              {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}}}}}},
            {"decoder", {{"type", "ByteLevel"}}},
            {"model",
             {{"type", model_type},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"vocab", vocab},
              {"merges",
               {"a b", "ab c", "\xc4\xa0 a",
                "\xc4\xa0"
                "a b"}}}}};
  return j.dump();
}

TEST(HfJsonTokenizer, HandWrittenTokenizerEncodesDecodesAndSaves) {
  polar_test::TempDir tmp;
  polar_test::write_text(tmp.file("tokenizer.json"), tiny_json());
  const Tokenizer tok = Tokenizer::load_base(tmp.path());
  EXPECT_STREQ(tok.backend_name(), "tokenizer.json");
  EXPECT_EQ(tok.vocab_size(), 12);
  EXPECT_EQ(tok.special().bos, 0);
  // "abc ab<s>c": abc | Ġ ab (rank 0 "a b" before rank 2 "Ġ a") | <s> | c
  EXPECT_EQ(encode_formatted_text(tok, "abc ab<s>c"), (std::vector<int32_t>{0, 6, 4, 5, 0, 3}));
  EXPECT_EQ(tok.encode("abc ab<s>c"), (std::vector<int32_t>{6, 4, 5, 9, 10, 11, 3}))
      << "plain encode keeps <s> as text";
  // The text "Ġa" is three bytes; C4 and A0 have no piece here (and no unk): only "a" remains.
  EXPECT_EQ(tok.encode("\xc4\xa0"
                       "a"),
            (std::vector<int32_t>{1}));
  EXPECT_EQ(tok.decode({6, 4, 5, 0, 3}), "abc ab<s>c");
  std::vector<int32_t> ids;
  std::vector<size_t> ends;
  tok.encode_split_specials("abc ab<s>c", ids, ends);
  EXPECT_EQ(ends, (std::vector<size_t>{3, 4, 6, 9, 10}));
  EXPECT_THROW(tok.encode(std::string("a\xff")), Error);  // not UTF-8

  // With template tokens: two new ids; save writes tokenizer.json and the choice.
  const TemplateTokenChoice choice = choose_polar_tokens(tok);
  EXPECT_EQ(choice.how, "added");
  EXPECT_EQ(choice.reward_sep, 12);
  EXPECT_EQ(choice.reward, 13);
  const Tokenizer polar_tok = with_polar_tokens(tok, choice);
  polar_tok.save(tmp.file("saved"));
  EXPECT_TRUE(fs::exists(tmp.file("saved/tokenizer.json")));
  EXPECT_FALSE(fs::exists(tmp.file("saved/tokenizer.model")));
  const Tokenizer again = Tokenizer::load(tmp.file("saved"));
  EXPECT_EQ(again.fingerprint(), polar_tok.fingerprint());
  EXPECT_EQ(encode_formatted_text(again, "ab<|reward|>c<|reward_token|>"),
            (std::vector<int32_t>{0, 5, 12, 3, 13}));
  const json stored = read_json_file(tmp.file("saved/polar_tokenizer.json"));
  EXPECT_EQ(stored["backend"], "tokenizer.json");
  EXPECT_EQ(stored["template_tokens"]["embedding_rows"], 14);
  EXPECT_EQ(choose_polar_tokens(again).how, "existing");
}

TEST(HfJsonTokenizer, UnsupportedComponentsAreNamed) {
  polar_test::TempDir tmp;
  auto expect_error = [&](const std::string& text, const std::string& needle) {
    polar_test::write_text(tmp.file("tokenizer.json"), text);
    try {
      Tokenizer::load_base(tmp.path());
      ADD_FAILURE() << "expected an error naming " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
    }
  };
  expect_error(tiny_json(R"({"type": "Digits", "individual_digits": true})"),
               "pre_tokenizer: pre-tokenizer \"Digits\" is not supported");
  expect_error(tiny_json(R"({"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}]})"),
               "pre_tokenizer.pretokenizers[0]");
  expect_error(tiny_json(R"(null)", "WordPiece"), "model.type: model \"WordPiece\"");
  json j = json::parse(tiny_json());
  j["normalizer"] = {{"type", "Lowercase"}};
  expect_error(j.dump(), "normalizer: normalizer \"Lowercase\"");
  j = json::parse(tiny_json());
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(j.dump(), "decoder: decoder \"WordPiece\"");
  j = json::parse(tiny_json());
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  expect_error(j.dump(), "post_processor: post_processor \"RobertaProcessing\"");
  j = json::parse(tiny_json());
  j["model"]["merges"].push_back("c zz");
  expect_error(j.dump(), "model.merges[4]");
  j = json::parse(tiny_json());
  j["truncation"] = {{"max_length", 8}};
  expect_error(j.dump(), "truncation");
  expect_error("{not json", "invalid JSON");
}

TEST(HfJsonTokenizer, DirectoryIsReadByWhatItHolds) {
  polar_test::TempDir tmp;
  // Only tokenizer.json: that backend. Both files: sentencepiece (as before), unless
  // polar_tokenizer.json names the backend.
  polar_test::write_text(tmp.file("tokenizer.json"), tiny_json());
  EXPECT_STREQ(Tokenizer::load_base(tmp.path()).backend_name(), "tokenizer.json");
  const Tokenizer& sp = polar_test::tiny_tokenizer();
  polar_test::write_text(tmp.file("tokenizer.model"), sp.model_bytes());
  EXPECT_STREQ(Tokenizer::load_base(tmp.path()).backend_name(), "sentencepiece");
  EXPECT_THROW(Tokenizer::load_base(tmp.file("missing")), Error);
}

}  // namespace
}  // namespace polar
