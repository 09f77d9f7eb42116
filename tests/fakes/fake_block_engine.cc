#include "tests/fakes/fake_block_engine.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace baq::testing {

void FakeEngineLog::Add(std::string entry) {
  absl::MutexLock lock(&mu_);
  entries_.push_back(std::move(entry));
}

std::vector<std::string> FakeEngineLog::entries() const {
  absl::MutexLock lock(&mu_);
  return entries_;
}

size_t FakeEngineLog::AwaitSize(size_t n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto ready = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return entries_.size() >= n; };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  return entries_.size();
}

FakeBlockEngine::FakeBlockEngine(FakeEngineOptions options, FakeEngineLog* log, std::string device)
    : options_(std::move(options)), log_(log), device_(std::move(device)) {}

void FakeBlockEngine::Log(const std::string& entry) {
  if (log_ != nullptr) log_->Add(device_.empty() ? entry : absl::StrCat(device_, ": ", entry));
}

std::string FakeBlockEngine::LayerName(int64_t block, int layer) {
  return absl::StrCat("model.layers.", block, ".fake_proj", layer);
}

double FakeBlockEngine::ColumnLoss(int64_t block, int layer, int64_t column) {
  return 1.0 + static_cast<double>(block) * 0.25 + layer * 0.5 +
         std::fmod(static_cast<double>(column) * 0.37, 3.0);
}

std::string FakeBlockEngine::ExpectedTensorBytes(int64_t block, int layer, size_t size) {
  std::string bytes(size, '\0');
  for (size_t k = 0; k < size; ++k) {
    bytes[k] = static_cast<char>((block * 31 + layer * 7 + static_cast<int64_t>(k)) % 251);
  }
  return bytes;
}

std::string FakeBlockEngine::ExpectedInputBytes(int64_t block, size_t size) {
  std::string bytes = absl::StrCat("inputs-of-block-", block, ":");
  while (bytes.size() < size) bytes.push_back(static_cast<char>('a' + bytes.size() % 26));
  bytes.resize(size);
  return bytes;
}

absl::Status FakeBlockEngine::CheckBlock(int64_t block) const {
  if (!started_) return absl::FailedPreconditionError("fake engine: not started");
  if (block < 0 || block >= options_.num_blocks) {
    return absl::InvalidArgumentError(absl::StrCat("fake engine: no block ", block));
  }
  return absl::OkStatus();
}

absl::Status FakeBlockEngine::Start(const JobConfig& config) {
  Log("start");
  if (config.model_dir == "bad-model") {
    return absl::InvalidArgumentError("fake engine: bad-model has no config.json");
  }
  Reset();
  started_ = true;
  parallel_ = config.mode == ExecutionMode::kParallel;
  inputs_.insert(0);
  return absl::OkStatus();
}

absl::StatusOr<BlockMeasurement> FakeBlockEngine::Measure(int64_t block) {
  Log(absl::StrCat("measure ", block));
  if (absl::Status s = CheckBlock(block); !s.ok()) return s;
  if (block == options_.fail_block) return options_.fail_status;
  if (inputs_.count(block) == 0) {
    return absl::FailedPreconditionError(absl::StrCat("fake engine: no inputs of block ", block));
  }
  BlockMeasurement m;
  m.block = block;
  m.calibration_tokens = 1024;
  for (int i = 0; i < options_.layers_per_block; ++i) {
    LayerMeasurement& layer = m.layers.emplace_back();
    layer.name = LayerName(block, i);
    layer.rows = options_.rows;
    for (int64_t j = 0; j < options_.columns; ++j) {
      layer.column_loss.push_back(ColumnLoss(block, i, j));
    }
  }
  measured_.insert(block);
  if (parallel_) inputs_.insert(block + 1);
  return m;
}

absl::StatusOr<BlockOutput> FakeBlockEngine::Quantize(
    int64_t block, const std::vector<LayerAllocation>& allocation) {
  Log(absl::StrCat("quantize ", block));
  if (absl::Status s = CheckBlock(block); !s.ok()) return s;
  if (measured_.count(block) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("fake engine: block ", block, " not measured"));
  }
  BlockOutput out;
  out.block = block;
  for (int i = 0; i < options_.layers_per_block; ++i) {
    TensorBytes& t = out.tensors.emplace_back();
    t.name = LayerName(block, i) + ".weight";
    t.dtype = DType::kU8;
    t.shape = {static_cast<int64_t>(options_.tensor_bytes)};
    t.bytes = ExpectedTensorBytes(block, i, options_.tensor_bytes);
    out.tensor_format.push_back(0);
    LayerReport& r = out.layers.emplace_back();
    r.name = LayerName(block, i);
    r.rows = options_.rows;
    r.columns = options_.columns;
    // bits = sum_j rows * log2(levels_j); 3 bits per column without levels.
    for (int64_t j = 0; j < options_.columns; ++j) {
      const bool have = static_cast<size_t>(i) < allocation.size() &&
                        static_cast<size_t>(j) < allocation[i].levels.size();
      const double bits = have ? std::log2(allocation[i].levels[j]) : 3.0;
      r.bits_sum += bits * static_cast<double>(options_.rows);
    }
    r.proxy_loss = ColumnLoss(block, i, 0);
  }
  measured_.erase(block);
  if (!parallel_) inputs_.insert(block + 1);
  return out;
}

absl::StatusOr<std::string> FakeBlockEngine::ExportInputs(int64_t block) {
  Log(absl::StrCat("export ", block));
  if (absl::Status s = CheckBlock(block); !s.ok()) return s;
  if (inputs_.count(block) == 0) {
    return absl::FailedPreconditionError(absl::StrCat("fake engine: no inputs of block ", block));
  }
  return ExpectedInputBytes(block, options_.input_bytes);
}

absl::Status FakeBlockEngine::ImportInputs(int64_t block, std::string bytes) {
  Log(absl::StrCat("import ", block));
  if (absl::Status s = CheckBlock(block); !s.ok()) return s;
  if (bytes != ExpectedInputBytes(block, bytes.size())) {
    return absl::InvalidArgumentError("fake engine: imported bytes are not block inputs");
  }
  inputs_.insert(block);
  return absl::OkStatus();
}

absl::StatusOr<double> FakeBlockEngine::Evaluate(const std::string& model_dir,
                                                 const std::string& text_file, int64_t seqlen) {
  Log(absl::StrCat("evaluate ", model_dir, " ", text_file, " ", seqlen));
  if (model_dir == "missing") {
    return absl::NotFoundError("fake engine: no checkpoint in \"missing\"");
  }
  return options_.perplexity;
}

void FakeBlockEngine::Reset() {
  if (started_) Log("reset");
  started_ = false;
  inputs_.clear();
  measured_.clear();
}

std::function<absl::StatusOr<std::unique_ptr<BlockEngine>>(const std::string& device)>
FakeEngineFactory(FakeEngineOptions options, FakeEngineLog* log) {
  return [options, log](const std::string& device) -> absl::StatusOr<std::unique_ptr<BlockEngine>> {
    if (device == "bad-device") return absl::UnavailableError("fake: no such device");
    return std::make_unique<FakeBlockEngine>(options, log, device);
  };
}

}  // namespace baq::testing
