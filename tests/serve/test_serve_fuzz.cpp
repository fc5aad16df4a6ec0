// A bounded fuzz campaign against a real `polar serve`: malformed bodies and headers, each on a
// fresh connection; every one must get a 4xx, none may hang or crash the server, and /health must
// still answer. POLAR_SERVE_FUZZ_CASES sets the count (default 300; the full campaign is 10,000+).
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>

#include "serve/fuzz_requests.h"
#include "serve/serve_test_util.h"

using namespace polar::testing;

TEST(ServeFuzz, MalformedRequestsGet4xxAndTheServerStaysUp) {
  const char* env = std::getenv("POLAR_SERVE_FUZZ_CASES");
  const int64_t n = env ? std::atoll(env) : 300;
  TempDir tmp;
  FuzzLimits limits;
  ServerProcess server(write_serve_checkpoint(tmp),
                       {"--max-sequences", std::to_string(limits.max_sequences), "--max-length",
                        std::to_string(limits.max_length), "--max-body-bytes",
                        std::to_string(limits.max_body_bytes), "--read-timeout", "1"},
                       tmp);
  std::mt19937_64 rng(2026);
  std::map<std::string, int64_t> by_kind;
  std::map<int, int64_t> by_status;
  int64_t failures = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < n; ++i) {
    FuzzCase c = make_fuzz_case(rng, limits);
    const int status = raw_status(raw_exchange(server.port(), c.bytes));
    by_kind[c.kind]++;
    by_status[status]++;
    if (status < 400 || status > 499) {
      if (++failures <= 5)
        ADD_FAILURE() << "case " << i << " (" << c.kind << ") got status " << status << ":\n"
                      << c.bytes.substr(0, 300);
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string summary;
  for (auto& [k, v] : by_kind) summary += " " + k + "=" + std::to_string(v);
  summary += " | status:";
  for (auto& [k, v] : by_status) summary += " " + std::to_string(k) + "=" + std::to_string(v);
  std::printf("fuzz: %lld cases in %.1f s, %lld not 4xx;%s\n", static_cast<long long>(n), seconds,
              static_cast<long long>(failures), summary.c_str());
  EXPECT_EQ(failures, 0);
  ASSERT_TRUE(server.process().running()) << server.process().output();
  auto health = server.client()->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}
