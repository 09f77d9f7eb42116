// tests/testing/local_job.h
//
// Local mode for tests: what `baq quantize` runs (a JobRunner driving one
// in-process TorchBlockEngine), the small job on the bundled OPT fixture
// (examples/) the local end-to-end tests start from, and a reader for the
// JSON files a job writes (quant_report.json, config.json).
//
// Thread-compatible free functions. Header-only: only tests that link the
// coordinator and the LibTorch worker (tests/tools, through baq_cli) use it.
//
// Example:
//   JobConfig config = ExampleFixtureJob(MakeScratchDir() + "/out");
//   config.quant.target_bits = 2.5;
//   BAQ_ASSERT_OK_AND_ASSIGN(coordinator::JobSummary s, RunLocalJob(config));
//   nlohmann::json report = ReadJsonFile(config.output_dir + "/quant_report.json");
#ifndef BAQ_TESTS_TESTING_LOCAL_JOB_H_
#define BAQ_TESTS_TESTING_LOCAL_JOB_H_

#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/statusor.h"
#include "common/job_config.h"
#include "coordinator/job_runner.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_paths.h"
#include "worker/torch_block_engine.h"

namespace baq::testing {

// The bundled OPT fixture (examples/opt-fixture) calibrated on 4 windows of
// 128 tokens of examples/calibration.txt, written to `output_dir`; method,
// bits and formats are JobConfig's defaults, for the caller to set.
inline JobConfig ExampleFixtureJob(const std::string& output_dir) {
  JobConfig config;
  config.model_dir = SourceDir() + "/examples/opt-fixture";
  config.output_dir = output_dir;
  config.calibration.files = {SourceDir() + "/examples/calibration.txt"};
  config.calibration.num_samples = 4;
  config.calibration.seqlen = 128;
  return config;
}

// Runs `config` as `baq quantize` does: a JobRunner over one in-process
// TorchBlockEngine with default options (CPU). The engine's or the job's error.
inline absl::StatusOr<coordinator::JobSummary> RunLocalJob(const JobConfig& config) {
  auto engine = worker::MakeTorchBlockEngine({});
  if (!engine.ok()) return engine.status();
  coordinator::JobRunner runner(config, {engine->get()}, nullptr);
  return runner.Run();
}

// The JSON document in the file at `path`. Throws nlohmann::json::parse_error
// (a test failure under gtest) when the file is missing or not JSON.
inline nlohmann::json ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

}  // namespace baq::testing

#endif  // BAQ_TESTS_TESTING_LOCAL_JOB_H_
