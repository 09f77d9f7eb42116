// tests/fakes/fake_job_config.h
//
// FakeJobConfig: a JobConfig that passes ValidateJobConfig and that the fakes
// (FakeBlockEngine, FakeWorkerService, FakeJobExecution) run without reading
// a file, for coordinator and service tests. The output directory tells jobs
// apart; model_dir "fail" or "fail_gate" makes a FakeJobExecution fail
// (tests/fakes/fake_job_execution.h). Header-only; needs only baq_common.
//
// Thread-safe free function.
//
// Example:
//   auto job = jobs->Submit("req-1", FakeJobConfig());
//   auto failing = jobs->Submit("req-2", FakeJobConfig("/tmp/out2", "fail"));
#ifndef BAQ_TESTS_FAKES_FAKE_JOB_CONFIG_H_
#define BAQ_TESTS_FAKES_FAKE_JOB_CONFIG_H_

#include <string>

#include "common/job_config.h"

namespace baq::testing {

inline JobConfig FakeJobConfig(const std::string& output_dir = "/tmp/out",
                               const std::string& model_dir = "/models/fake") {
  JobConfig config;
  config.model_dir = model_dir;
  config.output_dir = output_dir;
  config.calibration.files = {"calib.txt"};
  return config;
}

}  // namespace baq::testing

#endif  // BAQ_TESTS_FAKES_FAKE_JOB_CONFIG_H_
