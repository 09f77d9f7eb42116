// Retention of finished jobs' intermediate state by age and total size, with
// a fake clock over a temp data dir; outputs and records are never touched.
#include "coordinator/retention.h"

#include <sys/stat.h>
#include <sys/time.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/testing/test_paths.h"

namespace baq::coordinator {
namespace {

namespace fs = std::filesystem;
using ::testing::UnorderedElementsAre;

const absl::Time kNow = absl::FromUnixSeconds(2'000'000'000);

// Sets the modification time of `path` and everything under it.
void Touch(const std::string& path, absl::Time t) {
  const timeval tv = absl::ToTimeval(t);
  const timeval times[2] = {tv, tv};
  std::vector<std::string> paths = {path};
  if (fs::is_directory(path)) {
    for (const auto& e : fs::recursive_directory_iterator(path)) paths.push_back(e.path().string());
  }
  for (const std::string& p : paths) ASSERT_EQ(::utimes(p.c_str(), times), 0) << p;
}

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = baq::testing::MakeScratchDir();
    output_ = baq::testing::MakeScratchDir() + "/out";
    // Finished 10 h ago, 1000 bytes of checkpoints.
    AddJob("job-a", JobState::kSucceeded, kNow - absl::Hours(10), 1000);
    // Failed 1 h ago, 2000 bytes.
    AddJob("job-b", JobState::kFailed, kNow - absl::Hours(1), 2000);
    // Running (its files are old, but it is running), 500 bytes.
    AddJob("job-c", JobState::kRunning, absl::UnixEpoch(), 500);
    Touch(dir_ + "/jobs/job-c", kNow - absl::Hours(50));
    // A measurement last written 5 h ago, 3000 bytes.
    baq::testing::WriteFileOrDie(dir_ + "/measurements/fp1/hessians.bin", std::string(3000, 'h'));
    Touch(dir_ + "/measurements/fp1", kNow - absl::Hours(5));
    // An orphan checkpoint dir (no record), 100 h old, 10 bytes.
    baq::testing::WriteFileOrDie(dir_ + "/jobs/job-gone/block-0.bin", std::string(10, 'o'));
    Touch(dir_ + "/jobs/job-gone", kNow - absl::Hours(100));
    // A published output: outside the data dir, never touched.
    baq::testing::WriteFileOrDie(output_ + "/model.safetensors", std::string(50, 'w'));
  }

  void AddJob(const std::string& id, JobState state, absl::Time end, int64_t bytes) {
    JobRecord r;
    r.id = id;
    r.state = state;
    r.end_time = end;
    r.config.output_dir = output_;
    records_.push_back(r);
    baq::testing::WriteFileOrDie(dir_ + "/jobs/" + id + ".json", "{}");
    baq::testing::WriteFileOrDie(dir_ + "/jobs/" + id + "/block-0.bin",
                                 std::string(static_cast<size_t>(bytes), 'x'));
  }

  absl::StatusOr<RetentionReport> Collect(absl::Duration max_age, int64_t max_bytes) {
    RetentionOptions options;
    options.max_age = max_age;
    options.max_bytes = max_bytes;
    options.now = [] { return kNow; };
    return Retention(dir_, options).Collect(records_);
  }

  void ExpectUntouched() {
    EXPECT_TRUE(fs::exists(output_ + "/model.safetensors"));
    for (const char* id : {"job-a", "job-b", "job-c"}) {
      EXPECT_TRUE(fs::exists(dir_ + "/jobs/" + id + ".json")) << id;
    }
    EXPECT_TRUE(fs::exists(dir_ + "/jobs/job-c/block-0.bin"));
  }

  std::string dir_;
  std::string output_;
  std::vector<JobRecord> records_;
};

TEST_F(RetentionTest, RemovesWhatIsOlderThanMaxAge) {
  absl::StatusOr<RetentionReport> r = Collect(absl::Hours(3), 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->removed, UnorderedElementsAre(dir_ + "/jobs/job-a", dir_ + "/jobs/job-gone",
                                               dir_ + "/measurements/fp1"));
  EXPECT_EQ(r->bytes_freed, 1000 + 10 + 3000);
  EXPECT_EQ(r->bytes_kept, 2000 + 500);
  EXPECT_TRUE(fs::exists(dir_ + "/jobs/job-b/block-0.bin"));
  ExpectUntouched();
}

TEST_F(RetentionTest, RemovesOldestFirstUntilUnderMaxBytes) {
  // 6510 bytes in all; oldest removable first: job-a (10 h), the
  // measurement (5 h) -> 2510 <= 2600; job-b stays, and so does the orphan
  // (only age removes orphans: it may be a job newer than the records).
  absl::StatusOr<RetentionReport> r = Collect(absl::InfiniteDuration(), 2600);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->removed,
            (std::vector<std::string>{dir_ + "/jobs/job-a", dir_ + "/measurements/fp1"}));
  EXPECT_EQ(r->bytes_kept, 2510);
  EXPECT_TRUE(fs::exists(dir_ + "/jobs/job-gone"));
  ExpectUntouched();
}

TEST_F(RetentionTest, NeverRemovesARunningJobsStateEvenOverTheLimit) {
  absl::StatusOr<RetentionReport> r = Collect(absl::Seconds(1), 1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->removed.size(), 4u);
  EXPECT_EQ(r->bytes_kept, 500);
  ExpectUntouched();
}

TEST_F(RetentionTest, NoLimitsRemoveNothing) {
  RetentionOptions options;
  EXPECT_FALSE(options.enabled());
  absl::StatusOr<RetentionReport> r = Collect(absl::InfiniteDuration(), 0);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->removed.empty());
  EXPECT_EQ(r->bytes_kept, 6510);
}

}  // namespace
}  // namespace baq::coordinator
