// EngineSet: which worker losses a job survives, how the remaining blocks are
// re-planned, and when it gives up. Engines are in-process fakes that fail on
// command with the codes a RemoteBlockEngine returns.
#include "coordinator/engine_set.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace baq::coordinator {
namespace {

// Start() answers `start_status`; everything else is never called here.
// Offers no optional capability.
class ScriptedEngine : public BlockEngine {
 public:
  explicit ScriptedEngine(absl::Status start_status = absl::OkStatus(), int64_t blocks = 6)
      : start_status_(std::move(start_status)), blocks_(blocks) {}
  absl::Status Start(const JobConfig&) override {
    ++starts;
    return start_status_;
  }
  int64_t num_blocks() const override { return blocks_; }
  absl::StatusOr<BlockMeasurement> Measure(int64_t) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<BlockOutput> Quantize(int64_t, const std::vector<LayerAllocation>&) override {
    return absl::UnimplementedError("");
  }
  std::string name() const override { return "scripted engine"; }
  void Reset() override { ++resets; }
  void Cancel() override {}

  int starts = 0;
  int resets = 0;

 private:
  const absl::Status start_status_;
  const int64_t blocks_;
};

const absl::Status kCrash = absl::UnavailableError("worker w001: connection reset");

EngineSet::Options Options(MoreEnginesFn more = nullptr) {
  EngineSet::Options o;
  o.more_engines = std::move(more);
  o.max_worker_failures = 3;
  o.replacement_wait = absl::Milliseconds(200);
  o.poll = absl::Milliseconds(10);
  return o;
}

TEST(IsWorkerLossTest, CodesThatMeanTheWorkerIsGone) {
  EXPECT_TRUE(IsWorkerLoss(absl::UnavailableError("")));
  EXPECT_TRUE(IsWorkerLoss(absl::DeadlineExceededError("")));
  EXPECT_TRUE(IsWorkerLoss(absl::NotFoundError("no job")));  // Restarted worker.
  EXPECT_FALSE(IsWorkerLoss(absl::NotFoundError("no config.json"), /*starting=*/true));
  EXPECT_FALSE(IsWorkerLoss(absl::ResourceExhaustedError("CUDA OOM")));
  EXPECT_FALSE(IsWorkerLoss(absl::InvalidArgumentError("")));
  EXPECT_FALSE(IsWorkerLoss(absl::CancelledError("")));
  EXPECT_FALSE(IsWorkerLoss(absl::AbortedError("coordinator shutting down")));
}

TEST(EngineSetTest, PlansContiguousRangesAndReplansOverSurvivors) {
  ScriptedEngine a, b, c;
  std::atomic<bool> cancelled{false};
  EngineSet set({&a, &b, &c}, Options(), &cancelled);
  ASSERT_TRUE(set.StartAll(JobConfig()).ok());
  EXPECT_EQ(set.num_blocks(), 6);
  set.Plan(0, 6);
  std::vector<BlockEngine*> want = {&a, &a, &b, &b, &c, &c};
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(set.For(i), want[i]) << i;

  // b dies at block 2: blocks 2..5 go to a and c, still contiguous.
  ASSERT_TRUE(set.Fail(&b, kCrash, JobConfig()).ok());
  EXPECT_EQ(set.failures(), 1);
  EXPECT_EQ(set.live(), 2u);
  set.Plan(2, 6);
  want = {&a, &a, &c, &c};
  for (int64_t i = 2; i < 6; ++i) EXPECT_EQ(set.For(i), want[i - 2]) << i;
}

TEST(EngineSetTest, EveryCountedLossIsReported) {
  ScriptedEngine a, b;
  std::atomic<bool> cancelled{false};
  int losses = 0;
  EngineSet::Options o = Options();
  o.on_loss = [&losses] { ++losses; };  // JobRunner: baq_coordinator_job_worker_losses_total.
  EngineSet set({&a, &b}, o, &cancelled);
  ASSERT_TRUE(set.StartAll(JobConfig()).ok());
  EXPECT_EQ(set.Fail(&a, absl::ResourceExhaustedError("OOM"), JobConfig()).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(losses, 0);
  ASSERT_TRUE(set.Fail(&a, kCrash, JobConfig()).ok());
  EXPECT_EQ(losses, 1);
}

TEST(EngineSetTest, OtherErrorsAreReturnedUnchanged) {
  ScriptedEngine a;
  std::atomic<bool> cancelled{false};
  EngineSet set({&a}, Options(), &cancelled);
  ASSERT_TRUE(set.StartAll(JobConfig()).ok());
  const absl::Status oom = absl::ResourceExhaustedError("CUDA out of memory");
  EXPECT_EQ(set.Fail(&a, oom, JobConfig()), oom);
  EXPECT_EQ(set.failures(), 0);
  EXPECT_EQ(set.live(), 1u);
  // A cancelled job does not fail over either.
  cancelled = true;
  EXPECT_EQ(set.Fail(&a, kCrash, JobConfig()), kCrash);
  EXPECT_EQ(set.live(), 1u);
}

TEST(EngineSetTest, ReplacementsAreStartedAndResetWithTheSet) {
  ScriptedEngine a;
  ScriptedEngine* replacement = nullptr;
  int calls = 0;
  MoreEnginesFn more = [&]() -> absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> {
    std::vector<std::unique_ptr<BlockEngine>> v;
    if (calls++ == 0) {
      auto e = std::make_unique<ScriptedEngine>();
      replacement = e.get();
      v.push_back(std::move(e));
    }
    return v;
  };
  std::atomic<bool> cancelled{false};
  {
    EngineSet set({&a}, Options(more), &cancelled);
    ASSERT_TRUE(set.StartAll(JobConfig()).ok());
    ASSERT_TRUE(set.Fail(&a, kCrash, JobConfig()).ok());
    ASSERT_NE(replacement, nullptr);
    EXPECT_EQ(replacement->starts, 1);
    set.Plan(3, 6);
    EXPECT_EQ(set.For(3), replacement);
    EXPECT_EQ(set.For(5), replacement);
  }  // The set owns the replacement and resets it.
}

TEST(EngineSetTest, GivesUpBeyondTheFailureBudget) {
  std::vector<std::unique_ptr<ScriptedEngine>> engines;
  std::vector<BlockEngine*> raw;
  for (int i = 0; i < 5; ++i) {
    engines.push_back(std::make_unique<ScriptedEngine>());
    raw.push_back(engines.back().get());
  }
  std::atomic<bool> cancelled{false};
  EngineSet set(raw, Options(), &cancelled);
  ASSERT_TRUE(set.StartAll(JobConfig()).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(set.Fail(raw[i], kCrash, JobConfig()).ok()) << i;
  const absl::Status s = set.Fail(raw[3], kCrash, JobConfig());
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_NE(s.message().find("gave up after 4 worker failures (budget 3"), std::string::npos)
      << s;
  EXPECT_NE(s.message().find("connection reset"), std::string::npos) << s;
}

TEST(EngineSetTest, FailuresCarriedOverFromACheckpointCount) {
  ScriptedEngine a, b;
  std::atomic<bool> cancelled{false};
  EngineSet set({&a, &b}, Options(), &cancelled);
  ASSERT_TRUE(set.StartAll(JobConfig()).ok());
  set.set_failures(3);  // Survived before a coordinator restart.
  EXPECT_EQ(set.Fail(&a, kCrash, JobConfig()).code(), absl::StatusCode::kAborted);
}

TEST(EngineSetTest, NoWorkerLeftIsUnavailableAfterWaiting) {
  ScriptedEngine a;
  std::atomic<bool> cancelled{false};
  EngineSet set({&a}, Options(), &cancelled);
  ASSERT_TRUE(set.StartAll(JobConfig()).ok());
  const absl::Status s = set.Fail(&a, kCrash, JobConfig());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("no live worker left"), std::string::npos) << s;
}

TEST(EngineSetTest, StartSurvivesALostWorkerButNotABadModel) {
  ScriptedEngine lost(absl::UnavailableError("connection refused")), ok;
  std::atomic<bool> cancelled{false};
  EngineSet set({&lost, &ok}, Options(), &cancelled);
  ASSERT_TRUE(set.StartAll(JobConfig()).ok());
  EXPECT_EQ(set.failures(), 1);
  EXPECT_EQ(set.live(), 1u);

  ScriptedEngine bad(absl::NotFoundError("model dir has no config.json"));
  EngineSet strict({&bad}, Options(), &cancelled);
  const absl::Status s = strict.StartAll(JobConfig());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(strict.failures(), 0);
}

TEST(EngineSetTest, WithoutSurvivalEveryStartErrorFails) {
  ScriptedEngine lost(absl::UnavailableError("connection refused")), ok;
  std::atomic<bool> cancelled{false};
  EngineSet::Options o = Options();
  o.survive_losses = false;
  EngineSet set({&ok, &lost}, o, &cancelled);
  const absl::Status s = set.StartAll(JobConfig());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("worker 1: "), std::string::npos) << s;
}

}  // namespace
}  // namespace baq::coordinator
