// tests/fakes/fake_block_engine.h
//
// FakeBlockEngine: a deterministic, torch-free BlockEngine for service tests
// of the worker and the coordinator. It follows the protocol of
// common/block_engine.h (inputs must be present before Measure, Measure
// before Quantize) and produces fake losses and output tensors whose bytes
// are a pure function of (block, layer, index), so a test on the other side of
// a gRPC stream can check them with ExpectedTensorBytes().
//
// Thread-compatible like every BlockEngine; FakeEngineLog is thread-safe so a
// test can read what engines living on worker executor threads were asked.
//
// Example:
//   FakeEngineLog log;
//   FakeEngineOptions options;
//   options.num_blocks = 3;
//   FakeBlockEngine engine(options, &log);
//   BAQ_ASSERT_OK(engine.Start(config));
//   BAQ_ASSERT_OK_AND_ASSIGN(BlockMeasurement m, engine.Measure(0));
#ifndef BAQ_TESTS_FAKES_FAKE_BLOCK_ENGINE_H_
#define BAQ_TESTS_FAKES_FAKE_BLOCK_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/block_engine.h"
#include "common/engine_capabilities.h"

namespace baq::testing {

struct FakeEngineOptions {
  int64_t num_blocks = 4;
  int layers_per_block = 2;
  int64_t rows = 8;      // out_features of every fake layer.
  int64_t columns = 16;  // in_features: number of column losses.
  // Bytes of every output tensor (one per layer); > 4 MiB exercises chunking.
  size_t tensor_bytes = 64;
  // Bytes of ExportInputs' payload.
  size_t input_bytes = 48;
  // When >= 0, Measure(fail_block) returns `fail_status`.
  int64_t fail_block = -1;
  absl::Status fail_status = absl::InternalError("injected failure");
  // Evaluate()'s answer for any checkpoint; a model_dir named "missing" is
  // NotFound.
  double perplexity = 10.0;
};

// What the engines of one test were asked, in order ("start", "measure 0",
// "quantize 0", "export 1", "import 1", "reset"), prefixed with the engine's
// device when it has one ("cpu: measure 0").
class FakeEngineLog {
 public:
  void Add(std::string entry) ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<std::string> entries() const ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until `n` entries exist or `timeout` passes; returns the count.
  size_t AwaitSize(size_t n, absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> entries_ ABSL_GUARDED_BY(mu_);
};

// Offers ActivationTransfer and CheckpointEvaluator (not sharded
// calibration, not target switching).
class FakeBlockEngine : public BlockEngine,
                        public ActivationTransfer,
                        public CheckpointEvaluator {
 public:
  // `log` may be null; not owned, must outlive the engine.
  FakeBlockEngine(FakeEngineOptions options, FakeEngineLog* log, std::string device = "");

  std::string name() const override {
    return device_.empty() ? "fake engine" : "fake engine on " + device_;
  }
  ActivationTransfer* activation_transfer() override { return this; }
  CheckpointEvaluator* checkpoint_evaluator() override { return this; }
  void Cancel() override {}

  absl::Status Start(const JobConfig& config) override;
  int64_t num_blocks() const override { return options_.num_blocks; }
  absl::StatusOr<BlockMeasurement> Measure(int64_t block) override;
  absl::StatusOr<BlockOutput> Quantize(int64_t block,
                                       const std::vector<LayerAllocation>& allocation) override;
  absl::StatusOr<std::string> ExportInputs(int64_t block) override;
  absl::Status ImportInputs(int64_t block, std::string bytes) override;
  void Reset() override;
  // Logs "evaluate <model_dir> <text_file> <seqlen>"; see FakeEngineOptions::perplexity.
  absl::StatusOr<double> Evaluate(const std::string& model_dir, const std::string& text_file,
                                  int64_t seqlen) override;

  // The deterministic contents the fake produces.
  static std::string LayerName(int64_t block, int layer);
  static double ColumnLoss(int64_t block, int layer, int64_t column);
  static std::string ExpectedTensorBytes(int64_t block, int layer, size_t size);
  static std::string ExpectedInputBytes(int64_t block, size_t size);

 private:
  absl::Status CheckBlock(int64_t block) const;
  void Log(const std::string& entry);

  const FakeEngineOptions options_;
  FakeEngineLog* const log_;
  const std::string device_;
  bool started_ = false;
  bool parallel_ = false;
  std::set<int64_t> inputs_;    // Blocks whose inputs are present.
  std::set<int64_t> measured_;  // Blocks measured and not yet quantized.
};

// An engine factory in the shape the worker daemon takes, making fakes.
std::function<absl::StatusOr<std::unique_ptr<BlockEngine>>(const std::string& device)>
FakeEngineFactory(FakeEngineOptions options, FakeEngineLog* log);

}  // namespace baq::testing

#endif  // BAQ_TESTS_FAKES_FAKE_BLOCK_ENGINE_H_
