// POLAR's sampling scheme and the robustness of `polar sample`: the paper scheme's policy draw,
// plain language models (their own tokenizer, no POLAR tokens) as policies, each engine's top_k
// convention (an lmdeploy-style server rejecting top_k -1), prompts too long for a server's
// context, resume keyed by prompt text, the response filter's records, and the whole path
// `polar sample` -> `polar data pretrain --pairing paper` giving one group per prompt.
#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "openai_test_server.h"
#include "polar/checkpoint/checkpoint.h"
#include "polar/checkpoint/hf.h"
#include "polar/common/error.h"
#include "polar/data/builder.h"
#include "polar/sample/openai_client.h"
#include "polar/sample/sampler.h"
#include "sample_test_util.h"

namespace polar::sample {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::FakeOpenAIServer;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<json> records_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

int run_polar(const std::string& args, const std::string& log_path, std::string* log) {
  const char* env = std::getenv("POLAR_BIN");
  const std::string bin = env ? env : POLAR_BINARY_DIR "/polar";
  const int rc = std::system((bin + " " + args + " > " + log_path + " 2>&1").c_str());
  *log = slurp(log_path);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

PolicySpec server_policy(const FakeOpenAIServer& server, const std::string& name,
                         Engine engine = Engine::Vllm) {
  PolicySpec p;
  p.name = name;
  p.is_server = true;
  p.server.endpoint = server.endpoint();
  p.server.model = "tiny";
  p.server.engine = engine;
  p.server.timeout_s = 5;
  p.server.max_retries = 0;
  p.server.concurrency = 2;
  return p;
}

SampleRunOptions all_scheme(const std::vector<PolicySpec>& policies,
                            const std::vector<std::string>& prompts, const std::string& output) {
  SampleRunOptions o;
  o.policies = policies;
  for (const auto& p : prompts) o.prompts.push_back({p, ""});
  o.scheme = SampleScheme::All;
  o.output = output;
  o.progress = false;
  return o;
}

TEST(SampleScheme, PaperDrawsTwoDistinctPoliciesOfThePromptsKind) {
  std::vector<PolicySpec> pool(5);
  for (size_t i = 0; i < pool.size(); ++i) {
    pool[i].name = "p" + std::to_string(i);
    pool[i].kind = i < 3 ? PolicyKind::Base : PolicyKind::Chat;
  }
  std::map<size_t, int> as_a, as_b;
  for (int i = 0; i < 300; ++i) {
    const Prompt prefix{"text " + std::to_string(i), "", /*instruction=*/false};
    const Prompt instruction{"question " + std::to_string(i), "", /*instruction=*/true};
    for (const Prompt& prompt : {prefix, instruction}) {
      const auto drawn = paper_assignment(pool, prompt, 7);
      ASSERT_EQ(drawn.size(), 2u);
      EXPECT_EQ(drawn[0].second, 2);  // A: reference and positive
      EXPECT_EQ(drawn[1].second, 1);  // B: negative
      EXPECT_NE(drawn[0].first, drawn[1].first);
      for (const auto& [p, n] : drawn) {
        EXPECT_EQ(pool[p].kind, prompt.instruction ? PolicyKind::Chat : PolicyKind::Base);
      }
      ++as_a[drawn[0].first];
      ++as_b[drawn[1].first];
      // Seeded by the prompt's text: the same draw again.
      EXPECT_EQ(paper_assignment(pool, prompt, 7), drawn);
    }
  }
  EXPECT_EQ(as_a.size(), 5u);  // every policy is drawn as A and as B
  EXPECT_EQ(as_b.size(), 5u);
  for (const auto& [p, n] : as_a) EXPECT_GT(n, p < 3 ? 70 : 110) << p;  // uniform within a kind
  // A pool without two policies of the prompt's kind gives the prompt to any two policies.
  pool.resize(4);
  std::set<size_t> any;
  for (int i = 0; i < 50; ++i) {
    for (const auto& [p, n] :
         paper_assignment(pool, {"q" + std::to_string(i), "", /*instruction=*/true}, 0))
      any.insert(p);
  }
  EXPECT_EQ(any.size(), 4u);
}

TEST(SampleScheme, InstructionShareKeepsThatShareOfInstructionPrompts) {
  std::vector<Prompt> prompts;
  for (int i = 0; i < 40; ++i) prompts.push_back({"q" + std::to_string(i), "", true});
  for (int i = 0; i < 90; ++i) prompts.push_back({"t" + std::to_string(i), "", false});
  const auto kept = with_instruction_share(prompts, 0.1, 3);
  int64_t instructions = 0;
  for (const auto& p : kept) instructions += p.instruction ? 1 : 0;
  EXPECT_EQ(instructions, 10);  // 10 / (10 + 90)
  EXPECT_EQ(kept.size(), 100u);
  EXPECT_EQ(with_instruction_share(prompts, 0.0, 3).size(), 90u);
}

TEST(SampleServer, EachEngineGetsItsTopKConvention) {
  testing::TempDir tmp;
  FakeOpenAIServer server;
  server.lmdeploy_top_k = true;
  PolicySpec vllm = server_policy(server, "v");
  vllm.sampling.top_k = 0;  // off
  // vLLM's convention (-1) is refused by lmdeploy: an HTTP 400 that is no context error fails.
  const auto o = all_scheme({vllm}, {"p0"}, tmp / "v.jsonl");
  try {
    run_sampling(o);
    ADD_FAILURE() << "top_k -1 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("HTTP 400"), std::string::npos) << e.what();
  }
  PolicySpec lmdeploy = server_policy(server, "l", Engine::Lmdeploy);
  lmdeploy.sampling.top_k = 0;
  const auto stats = run_sampling(all_scheme({lmdeploy}, {"p0", "p1"}, tmp / "l.jsonl"));
  EXPECT_EQ(stats.written, 2);
  const json body = server.requests().back()["body"];
  EXPECT_FALSE(body.contains("top_k"));
  EXPECT_EQ(body["min_p"], 0.0);
  EXPECT_EQ(body["repetition_penalty"], 1.0);
  // A set top_k is sent to lmdeploy as it is; the plain OpenAI API gets none of the three.
  lmdeploy.sampling.top_k = 20;
  EXPECT_EQ(OpenAIClient("l", lmdeploy.server).request_body("x", lmdeploy.sampling, 1)["top_k"],
            20);
  PolicySpec openai = server_policy(server, "o", Engine::OpenAI);
  openai.sampling.top_k = 0;
  const json plain = OpenAIClient("o", openai.server).request_body("x", openai.sampling, 1);
  EXPECT_FALSE(plain.contains("top_k") || plain.contains("min_p") ||
               plain.contains("repetition_penalty"));
  EXPECT_EQ(plain["temperature"], 1.0);
}

TEST(SampleServer, TooLongPromptsAreCutOrSkippedNeverFatal) {
  testing::TempDir tmp;
  FakeOpenAIServer server;
  server.context_bytes = 40;
  const std::string fits = "a short prompt";                  // 14 bytes
  const std::string cut_once = std::string(60, 'x') + "end";  // 63 bytes: its last 32 fit
  const std::string too_long(2000, 'y');  // still 125 bytes after four cuts: skipped
  const auto o =
      all_scheme({server_policy(server, "s")}, {fits, cut_once, too_long}, tmp / "t.jsonl");
  const auto stats = run_sampling(o);
  EXPECT_EQ(stats.written, 2);
  EXPECT_EQ(stats.prompts_cut, 1);
  EXPECT_EQ(stats.context_skipped, 1);
  const auto records = records_of(o.output);
  ASSERT_EQ(records.size(), 2u);
  for (const auto& r : records) {
    if (r["prompt"] != cut_once) continue;
    EXPECT_EQ(r["prompt_cut"], true);
    // The server saw the prompt's last half (its echo starts the response).
    EXPECT_EQ(r["response"].get<std::string>().rfind(cut_once.substr(31) + "|", 0), 0u) << r;
  }
  // The re-run is not stopped by the prompt either: it is skipped again, nothing else is asked.
  const auto again = run_sampling(o);
  EXPECT_EQ(again.written, 0);
  EXPECT_EQ(again.context_skipped, 1);
  EXPECT_EQ(again.existing, 2);
}

TEST(SampleServer, EditedPromptFilesKeepTheirRecords) {
  testing::TempDir tmp;
  FakeOpenAIServer server;
  auto policy = server_policy(server, "s");
  policy.server.concurrency = 1;  // records in job order
  auto o = all_scheme({policy}, {"p0", "p1", "p2"}, tmp / "t.jsonl");
  o.samples_per_prompt = 2;
  EXPECT_EQ(run_sampling(o).written, 6);
  const std::string before = slurp(o.output);
  // p1 removed, p3 added in front: the records of p0 and p2 are still found by their text.
  o = all_scheme({policy}, {"p3", "p0", "p2"}, tmp / "t.jsonl");
  o.samples_per_prompt = 2;
  const auto stats = run_sampling(o);
  EXPECT_EQ(stats.existing, 6);
  EXPECT_EQ(stats.other_prompts, 2);  // p1's, kept
  EXPECT_EQ(stats.written, 2);        // p3's only
  EXPECT_EQ(slurp(o.output).substr(0, before.size()), before);
  // The same response as a run that had p3 alone: seeds follow the prompt text.
  auto alone = all_scheme({policy}, {"p3"}, tmp / "alone.jsonl");
  alone.samples_per_prompt = 2;
  run_sampling(alone);
  const auto added = records_of(o.output);
  const auto single = records_of(alone.output);
  EXPECT_EQ(added[6]["response"], single[0]["response"]);
  EXPECT_EQ(added[6]["prompt_id"], prompt_id("p3"));
}

TEST(SampleServer, FilteredResponsesAreMarkedAndCounted) {
  testing::TempDir tmp;
  FakeOpenAIServer server;
  server.finish_reason = "length";  // "<prompt>|<seed>": no sentence end in it, or one
  auto o = all_scheme({server_policy(server, "s")}, {"no end here", "One sentence. and more"},
                      tmp / "t.jsonl");
  const auto stats = run_sampling(o);
  EXPECT_EQ(stats.written, 2);
  EXPECT_EQ(stats.filter.unfinished_dropped, 1);
  EXPECT_EQ(stats.filter.unfinished_cut, 1);
  for (const auto& r : records_of(o.output)) {
    if (r["prompt"] == "no end here") {
      EXPECT_EQ(r["dropped"], "unfinished");
    } else {
      EXPECT_EQ(r["response"], "One sentence.");
      EXPECT_EQ(r["filtered"], json::array({"unfinished_cut"}));
    }
  }
  EXPECT_EQ(run_sampling(o).written, 0);  // a dropped response is not asked for again
  // `polar data pretrain` reads the file: the dropped record is counted, not an error.
  ReadStats read;
  const auto records = read_trajectories(o.output, /*skip_invalid=*/false, &read);
  EXPECT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].dropped.empty() + records[1].dropped.empty(), 1);

  // Aborted responses are not written: the re-run asks again.
  FakeOpenAIServer aborting;
  aborting.finish_reason = "abort";
  o = all_scheme({server_policy(aborting, "a")}, {"x. y."}, tmp / "a.jsonl");
  EXPECT_EQ(run_sampling(o).filter.aborted_dropped, 1);
  EXPECT_EQ(slurp(o.output), "");
}

// A plain sentencepiece LM tokenizer: no <|reward|>, no reward token.
std::string plain_tokenizer_model(const testing::TempDir& dir) {
  {
    std::ofstream out(dir / "corpus.txt");
    for (int i = 0; i < 200; ++i)
      out << "the policy " << i << " writes an answer. a reward model reads it, " << i * 7
          << " times.\n";
  }
  const std::string args = "--input=" + (dir / "corpus.txt") +
                           " --model_prefix=" + (dir / "plain") +
                           " --vocab_size=330 --hard_vocab_limit=false --byte_fallback=true "
                           "--minloglevel=2 --num_threads=1";
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) throw std::runtime_error(status.ToString());
  return dir / "plain.model";
}

TEST(SamplePlainLM, PoliciesNeedNoPolarTokens) {
  testutil::OneThread one;
  testing::TempDir tmp;
  const std::string model = plain_tokenizer_model(tmp);
  ModelConfig c = testutil::tiny_lm_config();
  c.vocab_size = 330;
  RewardModel decoder = polar::testutil::tiny_model(c, 3);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : decoder->named_parameters()) {
    if (p.key() != "score.weight") tensors.emplace_back(p.key(), p.value().detach().clone());
  }
  tensors.emplace_back("lm_head.weight", testutil::tiny_lm_head(c, 4));
  json config = hftest::hf_config_for(c, "LlamaForCausalLM", "llama");
  config["bos_token_id"] = 1;  // sentencepiece's <s>, </s>
  config["eos_token_id"] = 2;
  hftest::write_hf_dir(tmp / "lm", config, tensors, /*with_tokenizer=*/false);
  fs::copy_file(model, tmp / "lm/tokenizer.model");

  // A reward model import still needs POLAR's tokens.
  try {
    import_hf(tmp / "lm", torch::kCPU);
    ADD_FAILURE() << "imported as a reward model without <|reward|>";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("<|reward|>"), std::string::npos) << e.what();
  }
  // A policy does not: its own bos/eos, no reward ids.
  CausalLMOptions options;
  const CausalLM lm = CausalLM::load(tmp / "lm", options);
  EXPECT_EQ(lm.tokenizer().special().bos, 1);
  EXPECT_EQ(lm.tokenizer().special().eos, 2);
  EXPECT_EQ(lm.tokenizer().special().reward, -1);
  EXPECT_EQ(lm.tokenizer().special().reward_sep, -1);

  PolicySpec a, b;
  a.name = "a";
  a.builtin.model_dir = tmp / "lm";
  a.builtin.batch_size = 2;
  a.sampling.max_new_tokens = 6;
  b = a;
  b.name = "b";
  b.kind = PolicyKind::Chat;  // its own prompt format around the instruction
  b.builtin.chat_template = "User: {prompt}\nAssistant:";
  SampleRunOptions o = all_scheme({a, b}, {"the policy writes", "a reward"}, tmp / "t.jsonl");
  o.filter.enabled = false;
  EXPECT_EQ(run_sampling(o).written, 4);
  EXPECT_EQ(records_of(o.output).size(), 4u);
}

TEST(SamplePaperCli, OneGroupPerPromptThroughDataPretrain) {
  testing::TempDir tmp;
  for (int i = 0; i < 3; ++i) testutil::write_tiny_hf_lm(tmp / ("lm" + std::to_string(i)), 30 + i);
  {
    std::ofstream prompts(tmp / "prompts.jsonl");
    for (int i = 0; i < 8; ++i)
      prompts << json{{"prompt", "the capital of China is " + std::to_string(i)}}.dump() << "\n";
  }
  json policies = json::array();
  for (int i = 0; i < 3; ++i) {
    policies.push_back({{"name", "lm" + std::to_string(i)},
                        {"model_dir", "lm" + std::to_string(i)},
                        {"batch_size", 4}});
  }
  // The filter has tests of its own; here every response is kept as sampled, so that random tiny
  // models (which may end a response at once, or be cut at max_new_tokens) still leave groups.
  std::ofstream(tmp / "pool.json")
      << json{{"sampling", {{"max_new_tokens", 8}}}, {"policies", policies}}.dump();
  std::string log;
  ASSERT_EQ(run_polar("sample --pool " + (tmp / "pool.json") + " --prompts " +
                          (tmp / "prompts.jsonl") + " --output " + (tmp / "t.jsonl") +
                          " --threads 1 --no-progress" + " --no-response-filter",
                      tmp / "log1", &log),
            0)
      << log;
  const auto records = records_of(tmp / "t.jsonl");
  ASSERT_EQ(records.size(), 24u);  // 8 prompts x (A twice, B once)
  std::map<std::string, std::map<std::string, std::vector<std::string>>> per_prompt;
  for (const auto& r : records) per_prompt[r["prompt"]][r["policy"]].push_back(r["response"]);
  // A prompt makes one group when its three responses are non-empty and distinct (the builder
  // drops copies).
  int64_t expected_groups = 0;
  for (const auto& [prompt, by_policy] : per_prompt) {
    ASSERT_EQ(by_policy.size(), 2u) << prompt;
    std::multiset<size_t> n;
    std::set<std::string> distinct;
    bool empty = false;
    for (const auto& [policy, responses] : by_policy) {
      n.insert(responses.size());
      for (const auto& text : responses) {
        distinct.insert(text);
        empty = empty || text.empty();
      }
    }
    EXPECT_EQ(n, (std::multiset<size_t>{1, 2})) << prompt;
    expected_groups += !empty && distinct.size() == 3 ? 1 : 0;
  }
  EXPECT_GE(expected_groups, 4);

  ASSERT_EQ(run_polar("data pretrain --trajectories " + (tmp / "t.jsonl") + " --tokenizer " +
                          testing::tiny_tokenizer_dir() + " --output " + (tmp / "data") +
                          " --pairing paper --no-response-filter --skip-invalid --no-progress",
                      tmp / "log2", &log),
            0)
      << log;
  const json manifest = json::parse(slurp(tmp / "data/manifest.json"));
  EXPECT_EQ(manifest["splits"]["train"]["groups"].get<int64_t>() +
                manifest["splits"]["eval"]["groups"].get<int64_t>(),
            expected_groups)
      << manifest.dump(1);
}

}  // namespace
}  // namespace polar::sample
