// tools/cli/cancel_on_signal: Ctrl-C during `baq quantize` cancels the job
// cleanly. The real binary is started and sent SIGINT mid-job: it must say
// so, exit 6 (cancelled, docs/cli.md) with CANCELLED, and leave neither the output nor a
// hidden temp dir behind.
#include "tools/cli/cancel_on_signal.h"

#include <signal.h>

#include <filesystem>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_paths.h"
#include "tools/cli/exit_codes.h"

namespace baq::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(CancelOnSignalTest, SigintCallsCancelOnceAndTheDestructorReturns) {
  absl::Notification cancelled;
  {
    CancelOnSignal on_signal([&] { cancelled.Notify(); });
    EXPECT_FALSE(on_signal.signalled());
    kill(getpid(), SIGINT);  // Blocked in this thread: the watcher takes it.
    EXPECT_TRUE(cancelled.WaitForNotificationWithTimeout(absl::Seconds(10)));
    EXPECT_TRUE(on_signal.signalled());
  }
  // The mask is restored: SIGINT is deliverable again in this thread.
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  EXPECT_EQ(sigismember(&mask, SIGINT), 0);
}

TEST(CancelOnSignalTest, CtrlCDuringQuantizeCancelsAndPublishesNothing) {
  const std::string baq = testing::BinaryDir() + "/tools/cli/baq";
  ASSERT_TRUE(fs::exists(baq)) << baq << " not built (target baq_cli_main)";
  const std::string scratch = testing::MakeScratchDir();
  const std::string out = scratch + "/out";
  // BAQ over 6 blocks takes tens of seconds on CPU; the signal comes after 3 s.
  testing::ProcessResult r = testing::RunProcess(
      {baq, "quantize", "--model=" + testing::SourceDir() + "/examples/opt-fixture",
       "--calib=" + testing::SourceDir() + "/examples/calibration.txt", "--method=baq",
       "--bits=3", "--nsamples=4", "--seqlen=64", "--threads=1", "--out=" + out},
      {}, scratch + "/baq.log", absl::Seconds(3), SIGINT);
  ASSERT_TRUE(r.started);
  EXPECT_EQ(r.signal, 0) << r.output;  // It exited by itself ...
  EXPECT_EQ(r.exit_code, kExitCancelled) << r.output;
  EXPECT_THAT(r.output, HasSubstr("signal 2: cancelling the job"));
  EXPECT_THAT(r.output, HasSubstr("CANCELLED"));
  EXPECT_LT(r.wall, absl::Seconds(60)) << "cancel took too long";
  // ... and left nothing: no output, no temp or old sibling.
  EXPECT_FALSE(fs::exists(out));
  for (const auto& e : fs::directory_iterator(scratch)) {
    EXPECT_EQ(e.path().filename(), "baq.log") << "left behind: " << e.path();
  }
}

}  // namespace
}  // namespace baq::cli
