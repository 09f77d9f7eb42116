#include "common/failpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>

#include "absl/time/clock.h"

namespace baq::failpoint {
namespace {

using ::testing::HasSubstr;

class FailpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Enabled()) GTEST_SKIP() << "built without BAQ_ENABLE_FAILPOINTS";
  }
  void TearDown() override {
    if (Enabled()) {
      EXPECT_TRUE(Configure("").ok());
    }
  }
};

absl::Status Guarded(const char* name) {
  BAQ_FAILPOINT(name);
  return absl::OkStatus();
}

TEST_F(FailpointTest, UnconfiguredIsOk) {
  ASSERT_TRUE(Configure("").ok());
  EXPECT_TRUE(Eval("a").ok());
  EXPECT_TRUE(Guarded("a").ok());
}

TEST_F(FailpointTest, ErrorAndEnospc) {
  ASSERT_TRUE(Configure("a=error, b=enospc").ok());
  absl::Status a = Guarded("a");
  EXPECT_EQ(a.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(a.message()), HasSubstr("failpoint a: injected error"));
  absl::Status b = Eval("b");
  EXPECT_EQ(b.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(b.message()), HasSubstr("No space left on device"));
  EXPECT_TRUE(Eval("c").ok());
}

TEST_F(FailpointTest, NthHitOnly) {
  ASSERT_TRUE(Configure("a=error@3").ok());
  EXPECT_TRUE(Eval("a").ok());
  EXPECT_TRUE(Eval("a").ok());
  EXPECT_FALSE(Eval("a").ok());
  EXPECT_TRUE(Eval("a").ok());
  // Configure resets the counts.
  ASSERT_TRUE(Configure("a=error@1").ok());
  EXPECT_FALSE(Eval("a").ok());
}

TEST_F(FailpointTest, SleepDelaysThenContinues) {
  ASSERT_TRUE(Configure("a=sleep(50)").ok());
  const absl::Time start = absl::Now();
  EXPECT_TRUE(Eval("a").ok());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
}

TEST_F(FailpointTest, MalformedSpecIsRejectedAndKeepsTheOldOne) {
  ASSERT_TRUE(Configure("a=error").ok());
  for (const char* bad : {"a", "=error", "a=explode", "a=sleep(x)", "a=error@0", "a=crash@-1"}) {
    absl::Status s = Configure(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("BAQ_FAILPOINTS entry")) << bad;
  }
  EXPECT_FALSE(Eval("a").ok());
}

TEST_F(FailpointTest, CrashKillsTheProcessWithSigkill) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        (void)Configure("boom=crash");
        (void)Eval("boom");
      },
      ::testing::KilledBySignal(SIGKILL), "");
}

TEST(FailpointEnvTest, MalformedEnvironmentFailsEveryFailpoint) {
  if (!Enabled()) GTEST_SKIP() << "built without BAQ_ENABLE_FAILPOINTS";
  // The environment is read at the first Eval of a process: check it in a child.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("BAQ_FAILPOINTS", "x=bogus", 1);
        absl::Status s = Eval("anything");
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        std::_Exit(s.code() == absl::StatusCode::kInvalidArgument ? 3 : 4);
      },
      ::testing::ExitedWithCode(3), "x=bogus");
}

}  // namespace
}  // namespace baq::failpoint
