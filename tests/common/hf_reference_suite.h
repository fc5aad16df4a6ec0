// A test suite whose reference models hf_reference.py builds once for the whole suite: the
// derived suite's SetUpTestSuite makes tmp_ and seqs_ and calls build_reference(spec); its tests
// compare polar's numbers with result(name) within Derived::tolerance().
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "common/hf_test_util.h"

namespace polar::hftest {

template <class Derived>
class ReferenceSuite : public ::testing::Test {
 protected:
  static void build_reference(const nlohmann::json& spec) {
    try {
      reference_ = new nlohmann::json(run_reference(tmp_->path(), "build", spec));
    } catch (const std::exception& e) {
      *setup_error_ = e.what();
    }
  }

  static void TearDownTestSuite() {
    delete reference_;
    delete tmp_;
    reference_ = nullptr;
    tmp_ = nullptr;
  }

  void SetUp() override {
    if (!transformers_available())
      GTEST_SKIP() << kPython << " or its transformers package is missing (run scripts/setup.sh)";
    ASSERT_NE(reference_, nullptr) << "building the reference models failed: " << *setup_error_;
  }

  static const nlohmann::json& result(const std::string& name) {
    return (*reference_)["results"][*tmp_ / name];
  }

  static void expect_close(const std::vector<double>& got, const nlohmann::json& want,
                           const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], want[i].template get<double>(), Derived::tolerance())
          << what << " sequence " << i;
      worst = std::max(worst, std::abs(got[i] - want[i].template get<double>()));
    }
    std::cout << "  " << what << ": max |polar - transformers| = " << worst << "\n";
  }

  static inline testing::TempDir* tmp_ = nullptr;
  static inline nlohmann::json* reference_ = nullptr;
  static inline std::string* setup_error_ = new std::string();
  static inline std::vector<std::vector<int64_t>> seqs_;
};

}  // namespace polar::hftest
