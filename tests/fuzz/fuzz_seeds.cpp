#include "fuzz/fuzz_seeds.h"

#include <cstdio>

namespace polar::fuzz {

using nlohmann::json;

namespace {

// Every field the `tokenizers` library requires, so that the seeds load there too.
json added_token(int id, const char* content, bool normalized = false) {
  return {{"id", id},        {"content", content},       {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", normalized}, {"special", true}};
}

const std::vector<json> kAddedTokens = {added_token(0, "<s>"), added_token(1, "</s>"),
                                        added_token(2, "<|reward|>"),
                                        added_token(3, "<|reward_token|>")};

json bos_template() {
  return {{"type", "TemplateProcessing"},
          {"single",
           {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
            {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
          {"pair", json::array()},
          {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}}}}};
}

// A byte-level BPE (GPT-2 / Llama 3 style): every byte has a piece, a few merges.
json byte_level_seed() {
  json vocab = json::object();
  for (const auto& t : kAddedTokens) vocab[t["content"].get<std::string>()] = t["id"];
  uint32_t n = 0;
  for (int b = 0; b < 256; ++b) {  // GPT-2's bytes_to_unicode
    const bool direct = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const uint32_t cp = direct ? static_cast<uint32_t>(b) : 256 + n++;
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[s] = static_cast<int>(vocab.size());
  }
  const std::vector<std::string> merges = {"t h", "th e", "\xc4\xa0 th", "\xc4\xa0th e", "a b"};
  for (const auto& m : merges)
    vocab[m.substr(0, m.find(' ')) + m.substr(m.find(' ') + 1)] = static_cast<int>(vocab.size());
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", kAddedTokens},
          {"normalizer", {{"type", "NFC"}}},
          {"pre_tokenizer",
           {{"type", "ByteLevel"},
            {"add_prefix_space", false},
            {"trim_offsets", true},
            {"use_regex", true}}},
          {"post_processor", bos_template()},
          {"decoder",
           {{"type", "ByteLevel"},
            {"add_prefix_space", true},
            {"trim_offsets", true},
            {"use_regex", true}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"byte_fallback", false},
            {"vocab", vocab},
            {"merges", merges}}}};
}

// A Metaspace BPE with byte fallback (Llama 2 style normalizer and decoder).
json metaspace_seed() {
  json vocab = json::object();
  for (const auto& t : kAddedTokens) vocab[t["content"].get<std::string>()] = t["id"];
  vocab["<unk>"] = static_cast<int>(vocab.size());
  char hex[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    vocab[hex] = static_cast<int>(vocab.size());
  }
  for (const char* t : {"\xe2\x96\x81", "a", "b", "c", "t", "h", "e", "\xe2\x96\x81t", "he",
                        "\xe2\x96\x81the", "ab"})
    vocab[t] = static_cast<int>(vocab.size());
  return {
      {"version", "1.0"},
      {"added_tokens", kAddedTokens},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor", bos_template()},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\xe2\x96\x81"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"byte_fallback", true},
        {"fuse_unk", true},
        {"vocab", vocab},
        {"merges", {"\xe2\x96\x81 t", "h e", "\xe2\x96\x81t he", "a b"}}}}};
}

}  // namespace

std::vector<json> tokenizer_json_seeds() { return {byte_level_seed(), metaspace_seed()}; }

json pool_seed() {
  return json::parse(R"({
    "sampling": {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 64, "stop": ["\n\n"]},
    "policies": [
      {"name": "a", "endpoint": "http://127.0.0.1:8000", "model": "m", "engine": "vllm",
       "concurrency": 4, "timeout_s": 30, "max_retries": 2, "retry_backoff_s": 0.5,
       "sampling": {"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1}},
      {"name": "b", "kind": "chat", "endpoint": "http://127.0.0.1:8001/v1", "model": "m2",
       "engine": "openai", "sampling": {"top_k": 0}},
      {"name": "c", "chat": true, "endpoint": "https://example.com/x", "model": "m3",
       "engine": "sglang"},
      {"name": "d", "kind": "chat", "model_dir": "lm", "tokenizer": "tok", "device": "cpu",
       "dtype": "fp32", "chat_template": "<|user|>{prompt}<|assistant|>", "batch_size": 4,
       "sampling": {"temperature": 0}}
    ]})");
}

}  // namespace polar::fuzz
