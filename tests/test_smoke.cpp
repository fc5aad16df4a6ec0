#include <gtest/gtest.h>
TEST(Smoke, One) { EXPECT_EQ(1, 1); }
