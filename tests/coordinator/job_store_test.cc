// JobStore: records survive a round trip through <data_dir>/jobs/<id>.json
// field by field; saves replace the whole record and leave no temporary
// file; LoadAll orders by creation time and skips what it cannot read (a
// corrupt, truncated or foreign file) instead of failing the coordinator's
// start; a store without a data_dir persists nothing; I/O errors are Status.
#include "coordinator/job_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/fakes/fake_job_config.h"
#include "tests/testing/test_paths.h"

namespace baq::coordinator {
namespace {

namespace fs = std::filesystem;
using ::baq::testing::MakeScratchDir;
using ::baq::testing::ReadFileOrDie;
using ::baq::testing::WriteFileOrDie;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A record with every field away from its default.
JobRecord FullRecord(const std::string& id, absl::Time created) {
  JobRecord r;
  r.id = id;
  r.request_id = "req-" + id;
  r.config = baq::testing::FakeJobConfig("/out/" + id, "/models/m");
  r.config.formats = {OutputFormat::kPacked, OutputFormat::kGptq, OutputFormat::kCompressedTensors};
  r.config.max_shard_bytes = 123456;
  r.config.quant.method = QuantMethod::kGptq;
  r.config.quant.target_bits = 3.25;
  r.config.quant.group_size = 64;
  r.config.calibration.num_samples = 17;
  r.config.calibration_shards = 3;
  r.config.extra_target_bits = {2.5, 4};
  r.config.measurement_dir = "/data/measurements/m1";
  r.tenant = "research";
  r.priority = 7;
  r.memory_estimate_bytes = int64_t{5} << 30;
  r.state = JobState::kFailed;
  r.error = absl::UnavailableError("worker lost");
  r.progress.stage = JobStage::kQuantizing;
  r.progress.block = 4;
  r.progress.blocks_done = 4;
  r.progress.num_blocks = 12;
  r.progress.percent = 33.5;
  r.progress.elapsed = absl::Seconds(90);
  r.progress.eta = absl::Seconds(180);
  r.progress.achieved_bits = 3.125;
  r.progress.message = "block 4";
  r.create_time = created;
  r.start_time = created + absl::Seconds(1);
  r.end_time = created + absl::Seconds(91);
  JobSummary s;
  s.output_dir = "/out/" + id;
  s.target_bits = 3.25;
  s.achieved_bits = 3.2499;
  s.allocation = "global";
  s.total_proxy_loss = 12.5;
  s.quantized_elements = 123456;
  s.wall_time = absl::Seconds(90);
  TargetSummary t = s;
  t.eval_gate_ppl = 11.5;
  t.eval_gate_base_ppl = 10.25;
  t.published = true;
  s.targets = {t};
  r.summary = s;
  return r;
}

std::string JobsDir(const std::string& data_dir) { return data_dir + "/jobs"; }

std::vector<std::string> FileNames(const std::string& dir) {
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(JobStoreTest, RoundTripsEveryField) {
  const std::string dir = MakeScratchDir();
  const JobStore store(dir);
  ASSERT_TRUE(store.Init().ok());
  const JobRecord saved = FullRecord("job-1", absl::FromUnixMillis(1700000000123));
  ASSERT_TRUE(store.Save(saved).ok());

  absl::StatusOr<std::vector<JobRecord>> loaded = store.LoadAll();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 1u);
  const JobRecord& r = loaded->front();
  EXPECT_EQ(r.id, saved.id);
  EXPECT_EQ(r.request_id, saved.request_id);
  EXPECT_EQ(JobConfigToJson(r.config), JobConfigToJson(saved.config));
  EXPECT_EQ(r.tenant, "research");
  EXPECT_EQ(r.priority, 7);
  EXPECT_EQ(r.memory_estimate_bytes, saved.memory_estimate_bytes);
  EXPECT_EQ(r.state, JobState::kFailed);
  EXPECT_EQ(r.error, saved.error);
  EXPECT_EQ(r.progress.stage, JobStage::kQuantizing);
  EXPECT_EQ(r.progress.block, 4);
  EXPECT_EQ(r.progress.blocks_done, 4);
  EXPECT_EQ(r.progress.num_blocks, 12);
  EXPECT_EQ(r.progress.percent, 33.5);
  EXPECT_EQ(r.progress.elapsed, absl::Seconds(90));
  EXPECT_EQ(r.progress.eta, absl::InfiniteDuration());  // Meaningless after a reload.
  EXPECT_EQ(r.progress.achieved_bits, 3.125);
  EXPECT_EQ(r.progress.message, "block 4");
  EXPECT_EQ(r.create_time, saved.create_time);  // Milliseconds survive.
  EXPECT_EQ(r.start_time, saved.start_time);
  EXPECT_EQ(r.end_time, saved.end_time);
  ASSERT_TRUE(r.summary.has_value());
  EXPECT_EQ(r.summary->achieved_bits, 3.2499);
  EXPECT_EQ(r.summary->quantized_elements, 123456);
  EXPECT_EQ(r.summary->wall_time, absl::Seconds(90));
  ASSERT_EQ(r.summary->targets.size(), 1u);
  EXPECT_EQ(r.summary->targets[0].eval_gate_ppl, 11.5);
  EXPECT_EQ(r.summary->targets[0].eval_gate_base_ppl, 10.25);
  EXPECT_TRUE(r.summary->targets[0].published);
  // And nothing else is lost: the persisted form is identical.
  EXPECT_EQ(JobRecordToJson(r), JobRecordToJson(saved));
}

TEST(JobStoreTest, SaveReplacesTheRecordAndLeavesNoTemporaryFile) {
  const std::string dir = MakeScratchDir();
  const JobStore store(dir);
  ASSERT_TRUE(store.Init().ok());
  JobRecord r = FullRecord("job-1", absl::FromUnixSeconds(100));
  r.state = JobState::kRunning;
  ASSERT_TRUE(store.Save(r).ok());
  r.state = JobState::kSucceeded;
  r.error = absl::OkStatus();
  ASSERT_TRUE(store.Save(r).ok());
  EXPECT_THAT(FileNames(JobsDir(dir)), ElementsAre("job-1.json"));
  absl::StatusOr<std::vector<JobRecord>> loaded = store.LoadAll();
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ(loaded->front().state, JobState::kSucceeded);
  EXPECT_TRUE(loaded->front().error.ok());
}

TEST(JobStoreTest, LoadAllIsOldestFirstThenById) {
  const std::string dir = MakeScratchDir();
  const JobStore store(dir);
  ASSERT_TRUE(store.Init().ok());
  ASSERT_TRUE(store.Save(FullRecord("job-c", absl::FromUnixSeconds(300))).ok());
  ASSERT_TRUE(store.Save(FullRecord("job-b", absl::FromUnixSeconds(100))).ok());
  ASSERT_TRUE(store.Save(FullRecord("job-a", absl::FromUnixSeconds(300))).ok());
  absl::StatusOr<std::vector<JobRecord>> loaded = store.LoadAll();
  ASSERT_TRUE(loaded.ok());
  std::vector<std::string> ids;
  for (const JobRecord& r : *loaded) ids.push_back(r.id);
  EXPECT_THAT(ids, ElementsAre("job-b", "job-a", "job-c"));
}

TEST(JobStoreTest, LoadAllSkipsWhatItCannotRead) {
  const std::string dir = MakeScratchDir();
  const JobStore store(dir);
  ASSERT_TRUE(store.Init().ok());
  ASSERT_TRUE(store.Save(FullRecord("job-good", absl::FromUnixSeconds(1))).ok());
  const std::string good = ReadFileOrDie(JobsDir(dir) + "/job-good.json");
  // A crash mid-write (before the rename) leaves a .tmp: not a record.
  WriteFileOrDie(JobsDir(dir) + "/job-x.json.tmp", good);
  WriteFileOrDie(JobsDir(dir) + "/job-truncated.json", good.substr(0, good.size() / 2));
  WriteFileOrDie(JobsDir(dir) + "/job-empty.json", "");
  WriteFileOrDie(JobsDir(dir) + "/job-array.json", "[1, 2]");
  WriteFileOrDie(JobsDir(dir) + "/job-no-config.json", R"({"id": "job-no-config", "state": "queued"})");
  std::string bad_state = good;
  bad_state.replace(bad_state.find("\"failed\""), 8, "\"exploded\"");
  WriteFileOrDie(JobsDir(dir) + "/job-bad-state.json", bad_state);
  std::string bad_format = good;
  bad_format.replace(bad_format.find("\"packed\""), 8, "\"onnx\"");
  WriteFileOrDie(JobsDir(dir) + "/job-bad-format.json", bad_format);
  WriteFileOrDie(JobsDir(dir) + "/notes.txt", "not a record");

  absl::StatusOr<std::vector<JobRecord>> loaded = store.LoadAll();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ(loaded->front().id, "job-good");
}

TEST(JobStoreTest, WithoutADataDirNothingIsPersisted) {
  const JobStore store("");
  EXPECT_FALSE(store.enabled());
  EXPECT_TRUE(store.Init().ok());
  EXPECT_TRUE(store.Save(FullRecord("job-1", absl::FromUnixSeconds(1))).ok());
  absl::StatusOr<std::vector<JobRecord>> loaded = store.LoadAll();
  ASSERT_TRUE(loaded.ok());
  EXPECT_THAT(*loaded, IsEmpty());
}

TEST(JobStoreTest, DiskErrorsAreStatuses) {
  const std::string dir = MakeScratchDir();
  // The data dir is a file: the jobs dir cannot be created.
  WriteFileOrDie(dir + "/file", "x");
  const JobStore on_file(dir + "/file");
  EXPECT_EQ(on_file.Init().code(), absl::StatusCode::kInternal);
  // Not initialized: no jobs dir to write into.
  const JobStore uninitialized(dir + "/missing");
  const absl::Status save = uninitialized.Save(FullRecord("job-1", absl::FromUnixSeconds(1)));
  EXPECT_EQ(save.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(save.message()), HasSubstr("cannot write"));
  EXPECT_FALSE(fs::exists(dir + "/missing/jobs/job-1.json"));
}

TEST(JobStoreTest, ConfigJsonOmitsUnsetOptionalFields) {
  // Checkpoint fingerprints (JobConfigToJson) of plain jobs must not change
  // when fields are added: optional ones appear only when set.
  const nlohmann::json plain = JobConfigToJson(baq::testing::FakeJobConfig());
  EXPECT_FALSE(plain.contains("eval_gate"));
  EXPECT_FALSE(plain.contains("calibration_shards"));
  EXPECT_FALSE(plain.contains("extra_target_bits"));
  EXPECT_FALSE(plain.contains("measurement_dir"));
  EXPECT_FALSE(plain.contains("max_shard_bytes"));
  // Missing optional fields read back as the defaults.
  absl::StatusOr<JobConfig> back = JobConfigFromJson(plain);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(JobConfigToJson(*back), plain);
  EXPECT_EQ(back->calibration_shards, 1);
  nlohmann::json bad = plain;
  bad["mode"] = "sideways";
  EXPECT_EQ(JobConfigFromJson(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = plain;
  bad.erase("model_dir");
  EXPECT_EQ(JobConfigFromJson(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baq::coordinator
