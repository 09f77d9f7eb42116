// common/measurement_store: the fingerprint names what a measurement depends
// on, a complete measurement is found only with an equal fingerprint, and
// every refusal names its reason.
#include "common/measurement_store.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace baq {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A model dir and a calibration file of our own (their mtimes are touched).
struct Fixture {
  std::string root = testing::MakeScratchDir();
  JobConfig config;

  Fixture() {
    fs::create_directories(root + "/model");
    std::ofstream(root + "/model/config.json") << "{}";
    std::ofstream(root + "/model/model.safetensors") << "weights";
    std::ofstream(root + "/model/README.md") << "not part of the fingerprint";
    std::ofstream(root + "/calib.txt") << "some calibration text";
    config.model_dir = root + "/model";
    config.output_dir = root + "/out";
    config.calibration.files = {root + "/calib.txt"};
    config.mode = ExecutionMode::kParallel;
  }

  void WriteBlocks(const std::string& dir, int n) const {
    fs::create_directories(dir);
    for (int b = 0; b < n; ++b) std::ofstream(MeasurementBlockPath(dir, b)) << "h";
  }
};

TEST(MeasurementStoreTest, FingerprintNamesModelFilesAndCalibration) {
  Fixture f;
  absl::StatusOr<nlohmann::json> fp = MeasurementFingerprint(f.config);
  ASSERT_TRUE(fp.ok()) << fp.status();
  ASSERT_EQ((*fp)["model_files"].size(), 2u);  // config.json, model.safetensors; not README.
  EXPECT_EQ((*fp)["model_files"][0]["path"], "config.json");
  EXPECT_EQ((*fp)["model_files"][1]["size"], 7);
  EXPECT_EQ((*fp)["calibration"]["files"][0]["size"], 21);
  EXPECT_EQ((*fp)["calibration"]["num_samples"], f.config.calibration.num_samples);
  EXPECT_EQ((*fp)["mode"], "parallel");
}

TEST(MeasurementStoreTest, MissingCalibrationFileIsNotFoundNamingIt) {
  Fixture f;
  f.config.calibration.files = {f.root + "/absent.txt"};
  absl::StatusOr<nlohmann::json> fp = MeasurementFingerprint(f.config);
  EXPECT_EQ(fp.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(fp.status().message(), HasSubstr("absent.txt"));
}

TEST(MeasurementStoreTest, CompleteThenFoundOnlyWithTheSameFingerprint) {
  Fixture f;
  const std::string dir = f.root + "/m";
  EXPECT_EQ(FindReusableMeasurement(dir, f.config).status().code(), absl::StatusCode::kNotFound);
  f.WriteBlocks(dir, 2);
  absl::Status incomplete = CompleteMeasurement(dir, f.config, 3);
  EXPECT_EQ(incomplete.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(incomplete.message(), HasSubstr("block-00002.safetensors"));
  EXPECT_EQ(FindReusableMeasurement(dir, f.config).status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(CompleteMeasurement(dir, f.config, 2).ok());
  absl::StatusOr<int64_t> found = FindReusableMeasurement(dir, f.config);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, 2);

  // Another target, method or output: the same measurement.
  JobConfig other_target = f.config;
  other_target.quant.target_bits = 2.25;
  other_target.output_dir = f.root + "/elsewhere";
  EXPECT_TRUE(FindReusableMeasurement(dir, other_target).ok());

  JobConfig other_seed = f.config;
  other_seed.calibration.seed = 1;
  absl::StatusOr<int64_t> refused = FindReusableMeasurement(dir, other_seed);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("calibration.seed"));

  // A rewritten model file (size changes) is another model.
  std::ofstream(f.root + "/model/model.safetensors", std::ios::trunc) << "new weights!";
  refused = FindReusableMeasurement(dir, f.config);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("model_files[1]"));
}

TEST(MeasurementStoreTest, UnreadableManifestIsDataLoss) {
  Fixture f;
  const std::string dir = f.root + "/m";
  fs::create_directories(dir);
  std::ofstream(dir + "/measurement.json") << "{not json";
  EXPECT_EQ(FindReusableMeasurement(dir, f.config).status().code(), absl::StatusCode::kDataLoss);
  std::ofstream(dir + "/measurement.json", std::ios::trunc) << R"({"version": 9})";
  absl::StatusOr<int64_t> s = FindReusableMeasurement(dir, f.config);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.status().message(), HasSubstr("version 1"));
}

}  // namespace
}  // namespace baq
