// tests/worker/model/model_test_util.h
//
// Helpers shared by the worker/model tests: the shared fixture models
// (../shared/data/models/{opt,llama}-fixture), their golden forward pass, a
// test base parameterized over both, and error measures for comparing
// against the golden tensors. Header-only (each test is its own
// binary). Thread-compatible.
#ifndef BAQ_TESTS_WORKER_MODEL_MODEL_TEST_UTIL_H_
#define BAQ_TESTS_WORKER_MODEL_MODEL_TEST_UTIL_H_

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <ostream>
#include <string>

#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/safetensors_checkpoint.h"
#include "tests/testing/test_paths.h"
#include "worker/model/tensor_convert.h"

namespace baq::worker::testing {

inline std::string FixtureDir(const std::string& model) {
  return ::baq::testing::SharedDataDir() + "/models/" + model;
}

// A fixture model opened for execution.
struct FixtureModel {
  ModelConfig config;
  std::unique_ptr<SafetensorsCheckpoint> ckpt;
};

inline FixtureModel OpenFixtureOrDie(const std::string& model) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(FixtureDir(model));
  EXPECT_TRUE(config.ok()) << config.status();
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt =
      SafetensorsCheckpoint::Open(FixtureDir(model));
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  if (!config.ok() || !ckpt.ok()) return {};
  return FixtureModel{*config, std::move(*ckpt)};
}

// All tensors of <fixture>/golden_forward.safetensors, copied (float32 stays
// float32, input_ids int64).
inline std::map<std::string, at::Tensor> LoadGoldenOrDie(const std::string& model) {
  std::map<std::string, at::Tensor> out;
  auto file = SafetensorsFile::Open(FixtureDir(model) + "/golden_forward.safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return out;
  for (const TensorInfo& info : (*file)->tensors()) {
    absl::StatusOr<TensorView> view = (*file)->Get(info.name);
    EXPECT_TRUE(view.ok()) << view.status();
    absl::StatusOr<at::Tensor> t = CopyTensorFromView(*view, at::kCPU, ToScalarType(info.dtype));
    EXPECT_TRUE(t.ok()) << t.status();
    if (t.ok()) out[info.name] = *t;
  }
  return out;
}

// Machine epsilon of the golden dtypes (OPT float16 2^-10, LLaMA bfloat16
// 2^-7): the golden tests' tolerances are multiples of it.
constexpr double kFp16Eps = 1.0 / 1024;
constexpr double kBf16Eps = 1.0 / 128;

// The parameter of the golden-comparison tests: a fixture model and its
// golden dtype's epsilon.
struct GoldenFixture {
  const char* name;
  double eps;
};
// Readable CTest names ("... # GetParam() = opt-fixture").
inline void PrintTo(const GoldenFixture& f, std::ostream* os) { *os << f.name; }

// Both fixture models, for INSTANTIATE_TEST_SUITE_P(..., GoldenFixtures(),
// GoldenFixtureName).
inline auto GoldenFixtures() {
  return ::testing::Values(GoldenFixture{"opt-fixture", kFp16Eps},
                           GoldenFixture{"llama-fixture", kBf16Eps});
}
inline std::string GoldenFixtureName(const ::testing::TestParamInfo<GoldenFixture>& info) {
  return info.param.name[0] == 'o' ? "Opt" : "Llama";
}

// Opens GetParam()'s fixture model and golden forward pass before each test
// (skipped without the shared data); subclasses extend SetUp() after calling
// this one, and return if it skipped or failed.
class GoldenFixtureTest : public ::testing::TestWithParam<GoldenFixture> {
 protected:
  void SetUp() override {
    if (!::baq::testing::HaveSharedData()) GTEST_SKIP() << "no shared data";
    model_ = OpenFixtureOrDie(GetParam().name);
    golden_ = LoadGoldenOrDie(GetParam().name);
    ASSERT_NE(model_.ckpt, nullptr);
  }

  FixtureModel model_;
  std::map<std::string, at::Tensor> golden_;
};

// max |actual - expected| and that divided by max |expected| (the error
// relative to the tensor's scale; elementwise relative error is meaningless
// near zero).
struct ErrorStats {
  double max_abs = 0;
  double max_rel = 0;
};

inline ErrorStats Compare(const at::Tensor& actual, const at::Tensor& expected) {
  const at::Tensor a = actual.to(at::kDouble), e = expected.to(at::kDouble);
  ErrorStats s;
  s.max_abs = (a - e).abs().max().item<double>();
  s.max_rel = s.max_abs / std::max(1e-30, e.abs().max().item<double>());
  return s;
}

}  // namespace baq::worker::testing

#endif  // BAQ_TESTS_WORKER_MODEL_MODEL_TEST_UTIL_H_
