// Several bit targets over one measurement and measurement reuse across
// jobs (issue 11, JobConfig::extra_target_bits / measurement_dir), end to
// end in local mode: in parallel mode every target's output must be
// byte-identical to a fresh single-target job, both when the targets share
// one job's in-memory measurement and when a later job reloads the
// measurement kept on disk. The model is a tiny random LLaMA
// (tests/testing/tiny_model.h) so that the six BAQ jobs take seconds on two
// CPU cores; bench/device/reuse_and_shards.sh
// runs the same comparisons on the OPT fixture (CPU or CUDA).
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "common/measurement_store.h"
#include "coordinator/job_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/local_job.h"
#include "tests/testing/test_paths.h"
#include "tests/testing/tiny_model.h"
#include "worker/torch_block_engine.h"

namespace baq {
namespace {

namespace fs = std::filesystem;

constexpr double kBitsTolerance = 1e-3;  // Achieved vs target average bits.

JobConfig ParallelJob(const std::string& model, const std::string& out, double bits) {
  JobConfig c = testing::ExampleFixtureJob(out);
  c.model_dir = model;
  c.calibration.seqlen = 64;
  c.formats = {OutputFormat::kFakeQuant, OutputFormat::kPacked};
  c.mode = ExecutionMode::kParallel;
  c.quant.target_bits = bits;
  return c;
}

absl::StatusOr<coordinator::JobSummary> RunLocal(const JobConfig& config) {
  auto engine = worker::MakeTorchBlockEngine({});
  if (!engine.ok()) return engine.status();
  coordinator::JobRunner runner(config, {engine->get()}, nullptr);
  return runner.Run();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every file below `dir` (relative path -> bytes), except the reports,
// which carry wall times.
std::map<std::string, std::string> Files(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().filename() == "quant_report.json") continue;
    files[fs::relative(e.path(), dir).string()] = ReadFile(e.path().string());
  }
  return files;
}

void ExpectSameOutput(const std::string& got, const std::string& want) {
  const std::map<std::string, std::string> a = Files(got), b = Files(want);
  ASSERT_FALSE(b.empty()) << want;
  ASSERT_EQ(a.size(), b.size()) << got << " vs " << want;
  for (const auto& [name, bytes] : b) {
    ASSERT_TRUE(a.count(name)) << got << " lacks " << name;
    EXPECT_TRUE(a.at(name) == bytes) << name << " differs between " << got << " and " << want;
  }
}

// One job with two targets keeps its measurement; a fresh single-target job
// and a later job reusing the kept measurement must give the same bytes.
TEST(MeasurementReuseTest, TargetsOfOneJobAndAReusedMeasurementEqualFreshRuns) {
  const std::string root = testing::MakeScratchDir();
  const std::string kept = root + "/measurement";
  const std::string model = testing::TinyLlamaDir();
  ASSERT_FALSE(model.empty()) << "make_random_model.py failed";

  JobConfig both = ParallelJob(model, root + "/both", 2.5);
  both.extra_target_bits = {3.0};
  both.measurement_dir = kept;
  absl::StatusOr<coordinator::JobSummary> s = RunLocal(both);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->targets.size(), 2u);
  for (const coordinator::TargetSummary& t : s->targets) {
    EXPECT_NEAR(t.achieved_bits, t.target_bits, kBitsTolerance);
    EXPECT_TRUE(t.published);
  }
  EXPECT_EQ(s->targets[0].output_dir, root + "/both/bits-2.5");
  EXPECT_EQ(s->targets[1].output_dir, root + "/both/bits-3");
  absl::StatusOr<int64_t> blocks = FindReusableMeasurement(kept, both);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  EXPECT_EQ(*blocks, testing::kTinyLlamaBlocks);

  // The second target (pass 1 redone from the Hessians kept in memory) is
  // what a fresh job at that target writes.
  ASSERT_FALSE(Files(root + "/both/bits-2.5") == Files(root + "/both/bits-3"));  // Not trivial.
  ASSERT_TRUE(RunLocal(ParallelJob(model, root + "/fresh-3", 3.0)).ok());
  ExpectSameOutput(root + "/both/bits-3", root + "/fresh-3");

  // A later job reloads the kept measurement (no calibration forwards) and
  // writes what the first target (measured like a fresh job) wrote.
  JobConfig reuse = ParallelJob(model, root + "/reused-2.5", 2.5);
  reuse.measurement_dir = kept;
  ::testing::internal::CaptureStderr();
  absl::StatusOr<coordinator::JobSummary> r = RunLocal(reuse);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(log, ::testing::HasSubstr("reusing the measurement in " + kept));
  ExpectSameOutput(root + "/reused-2.5", root + "/both/bits-2.5");

  // A measurement of another calibration set is refused, naming the difference.
  JobConfig other = ParallelJob(model, root + "/other-seed", 3.0);
  other.measurement_dir = kept;
  other.calibration.seed = 7;
  absl::StatusOr<coordinator::JobSummary> refused = RunLocal(other);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("calibration.seed"));
  EXPECT_FALSE(fs::exists(root + "/other-seed"));  // Nothing published.

  // A damaged block file fails the job, naming the file.
  { std::ofstream(MeasurementBlockPath(kept, 2), std::ios::trunc) << "not safetensors"; }
  JobConfig damaged = ParallelJob(model, root + "/damaged", 2.0);
  damaged.measurement_dir = kept;
  absl::StatusOr<coordinator::JobSummary> d = RunLocal(damaged);
  EXPECT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), ::testing::HasSubstr("block-00002.safetensors"));
  EXPECT_FALSE(fs::exists(root + "/damaged"));
}

}  // namespace
}  // namespace baq
