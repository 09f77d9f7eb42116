#include "worker/quant/hessian_accumulator.h"

#include <cstring>
#include <utility>

#include "absl/base/config.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/quant/gptq_engine.h"
#include "worker/quant/tensor_checks.h"
#include "worker/torch_call.h"

namespace baq::worker {
namespace {

#ifdef ABSL_IS_BIG_ENDIAN
#error "the HessianAccumulator wire format assumes a little-endian host"
#endif

constexpr char kMagic[4] = {'B', 'A', 'Q', 'H'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = sizeof(kMagic) + sizeof(uint32_t) + 2 * sizeof(int64_t);

template <typename T>
void Append(std::string* out, const T& v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <typename T>
T Read(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

HessianAccumulator::HessianAccumulator(int64_t num_columns, at::Device device)
    : num_columns_(num_columns),
      sum_(at::zeros({num_columns, num_columns}, at::TensorOptions(device).dtype(at::kDouble))) {}

absl::Status HessianAccumulator::Add(const at::Tensor& activations) {
  if (!activations.defined() || activations.dim() < 1 || activations.size(-1) != num_columns_) {
    return absl::InvalidArgumentError(absl::StrCat("activations must be [..., ", num_columns_,
                                                   "], got ", ShapeString(activations)));
  }
  if (!at::isFloatingType(activations.scalar_type())) {
    return absl::InvalidArgumentError(absl::StrCat("activations must be floating point, got ",
                                                   c10::toString(activations.scalar_type())));
  }
  if (activations.numel() == 0) return absl::OkStatus();
  return CallTorch("HessianAccumulator::Add", [&]() -> absl::Status {
    const at::Tensor x = activations.reshape({-1, num_columns_}).to(sum_.device(), at::kDouble);
    BAQ_RETURN_IF_ERROR(CheckFiniteMatrix(x, "activations"));
    // sum += x^T x, unnormalized (gptq.py keeps a running mean; see header),
    // by fixed column blocks on CPU so that a multi-threaded BLAS cannot make
    // the bits depend on the thread count.
    quant_internal::ForEachChunk(
        sum_.is_cpu(), num_columns_, quant_internal::kCpuRowChunk, [&](int64_t j0, int64_t j1) {
          sum_.narrow(1, j0, j1 - j0).addmm_(x.t(), x.narrow(1, j0, j1 - j0));
        });
    rows_ += x.size(0);
    return absl::OkStatus();
  });
}

absl::Status HessianAccumulator::Merge(const HessianAccumulator& other) {
  if (other.num_columns_ != num_columns_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot merge a ", other.num_columns_,
                                                   "-column accumulator into a ", num_columns_,
                                                   "-column one"));
  }
  return CallTorch("HessianAccumulator::Merge", [&] {
    sum_.add_(other.sum_.to(sum_.device()));
    rows_ += other.rows_;
  });
}

absl::StatusOr<at::Tensor> HessianAccumulator::Finalize(at::ScalarType dtype) const {
  if (rows_ == 0) return absl::FailedPreconditionError("no calibration rows were added");
  if (dtype != at::kFloat && dtype != at::kDouble) {
    return absl::InvalidArgumentError(
        absl::StrCat("Finalize dtype must be float32 or float64, got ", c10::toString(dtype)));
  }
  return CallTorch("HessianAccumulator::Finalize",
                   [&] { return (sum_ * (2.0 / static_cast<double>(rows_))).to(dtype); });
}

std::string HessianAccumulator::Serialize() const {
  const at::Tensor cpu = sum_.to(at::kCPU).contiguous();
  std::string out;
  const size_t payload = static_cast<size_t>(cpu.numel()) * sizeof(double);
  out.reserve(kHeaderBytes + payload);
  out.append(kMagic, sizeof(kMagic));
  Append(&out, kVersion);
  Append(&out, num_columns_);
  Append(&out, rows_);
  out.append(reinterpret_cast<const char*>(cpu.data_ptr<double>()), payload);
  return out;
}

absl::StatusOr<HessianAccumulator> HessianAccumulator::Deserialize(absl::string_view bytes,
                                                                   at::Device device) {
  if (bytes.size() < kHeaderBytes || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("not a serialized HessianAccumulator (",
                                                   bytes.size(), " bytes, bad magic or header)"));
  }
  const char* p = bytes.data() + sizeof(kMagic);
  const uint32_t version = Read<uint32_t>(p);
  const int64_t cols = Read<int64_t>(p + sizeof(uint32_t));
  const int64_t rows = Read<int64_t>(p + sizeof(uint32_t) + sizeof(int64_t));
  if (version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("HessianAccumulator version ", version,
                                                   " is not supported (want ", kVersion, ")"));
  }
  const uint64_t payload = bytes.size() - kHeaderBytes;
  // cols^2 * 8 == payload, checked without overflow.
  if (cols <= 0 || rows < 0 || static_cast<uint64_t>(cols) > payload / sizeof(double) ||
      static_cast<uint64_t>(cols) * static_cast<uint64_t>(cols) * sizeof(double) != payload) {
    return absl::InvalidArgumentError(absl::StrCat("HessianAccumulator header says ", cols,
                                                   " columns and ", rows, " rows but carries ",
                                                   payload, " payload bytes"));
  }
  return CallTorch("HessianAccumulator::Deserialize", [&]() -> absl::StatusOr<HessianAccumulator> {
    at::Tensor sum = at::empty({cols, cols}, at::kDouble);
    std::memcpy(sum.data_ptr<double>(), bytes.data() + kHeaderBytes, payload);
    BAQ_RETURN_IF_ERROR(CheckFiniteMatrix(sum, "serialized Hessian sum"));
    HessianAccumulator acc(cols, device);
    acc.sum_.copy_(sum);
    acc.rows_ = rows;
    return acc;
  });
}

}  // namespace baq::worker
