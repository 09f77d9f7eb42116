#include "common/hessian_format.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>

#include "absl/base/config.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace baq {
namespace {

#ifdef ABSL_IS_BIG_ENDIAN
#error "the BAQH wire format is little-endian; this codec copies host-order values"
#endif

constexpr char kMagic[4] = {'B', 'A', 'Q', 'H'};
constexpr size_t kVersionOffset = 4;
constexpr size_t kColumnsOffset = 8;
constexpr size_t kRowsOffset = 16;
static_assert(kRowsOffset + sizeof(int64_t) == kHessianHeaderBytes);

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
void Append(std::string* out, const T& v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}

}  // namespace

double HessianSumView::At(int64_t index) const {
  return Load<double>(payload.data() + static_cast<size_t>(index) * sizeof(double));
}

void HessianSumView::CopyTo(absl::Span<double> out) const {
  if (!upper) {
    if (!payload.empty()) std::memcpy(out.data(), payload.data(), payload.size());
    return;
  }
  const size_t c = static_cast<size_t>(columns);
  const char* src = payload.data();
  for (size_t i = 0; i < c; ++i) {
    // Row i of the triangle: S[i][i..c), into row i and column i.
    std::memcpy(out.data() + i * c + i, src, (c - i) * sizeof(double));
    for (size_t j = i + 1; j < c; ++j) out[j * c + i] = out[i * c + j];
    src += (c - i) * sizeof(double);
  }
}

namespace {

std::string EncodeHeader(uint32_t version, int64_t columns, int64_t rows,
                         absl::Span<const double> sum, size_t payload_elements) {
  if (columns < 1 || columns > kMaxHessianColumns || rows < 0 ||
      sum.size() != static_cast<size_t>(columns * columns)) {
    // A caller bug (STYLE R14): the accumulator's own state is inconsistent.
    std::cerr << "EncodeHessianSum: " << columns << " columns, " << rows << " rows, "
              << sum.size() << " values\n";
    std::abort();
  }
  std::string out;
  out.reserve(kHessianHeaderBytes + payload_elements * sizeof(double));
  out.append(kMagic, sizeof(kMagic));
  Append(&out, version);
  Append(&out, columns);
  Append(&out, rows);
  return out;
}

}  // namespace

std::string EncodeHessianSum(int64_t columns, int64_t rows, absl::Span<const double> sum) {
  std::string out = EncodeHeader(kHessianFormatVersion, columns, rows, sum, sum.size());
  out.append(reinterpret_cast<const char*>(sum.data()), sum.size() * sizeof(double));
  return out;
}

std::string EncodeUpperHessianSum(int64_t columns, int64_t rows, absl::Span<const double> sum) {
  const size_t c = static_cast<size_t>(columns < 0 ? 0 : columns);
  std::string out = EncodeHeader(kHessianUpperFormatVersion, columns, rows, sum,
                                 c * (c + 1) / 2);
  for (size_t i = 0; i < c; ++i) {
    out.append(reinterpret_cast<const char*>(sum.data() + i * c + i), (c - i) * sizeof(double));
  }
  return out;
}

absl::StatusOr<HessianSumView> ParseHessianSum(absl::string_view bytes) {
  if (bytes.size() < kHessianHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("not a Hessian sum: ", bytes.size(),
                                                   " bytes, shorter than the ",
                                                   kHessianHeaderBytes, "-byte header"));
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("not a Hessian sum: magic \"",
                                                   absl::CHexEscape(bytes.substr(0, 4)),
                                                   "\" (want \"BAQH\")"));
  }
  const uint32_t version = Load<uint32_t>(bytes.data() + kVersionOffset);
  if (version != kHessianFormatVersion && version != kHessianUpperFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Hessian sum format version ", version, " is not supported (want ",
        kHessianFormatVersion, " or ", kHessianUpperFormatVersion, ")"));
  }
  HessianSumView v;
  v.upper = version == kHessianUpperFormatVersion;
  v.columns = Load<int64_t>(bytes.data() + kColumnsOffset);
  v.rows = Load<int64_t>(bytes.data() + kRowsOffset);
  if (v.columns < 1 || v.columns > kMaxHessianColumns) {
    return absl::InvalidArgumentError(absl::StrCat("Hessian sum has ", v.columns,
                                                   " columns (want 1 to ", kMaxHessianColumns,
                                                   ")"));
  }
  if (v.rows < 0) {
    return absl::InvalidArgumentError(absl::StrCat("Hessian sum has ", v.rows, " rows"));
  }
  // Cannot overflow: columns^2 * 8 <= 2^43.
  const size_t want = kHessianHeaderBytes + static_cast<size_t>(v.elements()) * sizeof(double);
  if (bytes.size() != want) {
    return absl::InvalidArgumentError(absl::StrCat("Hessian sum: ", bytes.size(), " bytes, a ",
                                                   v.columns, "-column ",
                                                   v.upper ? "upper triangle" : "sum", " has ",
                                                   want));
  }
  v.payload = bytes.substr(kHessianHeaderBytes);
  return v;
}

absl::Status CheckHessianSumFinite(const HessianSumView& sum) {
  int64_t nan = 0;
  int64_t inf = 0;
  int64_t first = -1;
  const int64_t n = sum.elements();
  for (int64_t i = 0; i < n; ++i) {
    const double x = sum.At(i);
    if (std::isfinite(x)) continue;
    if (first < 0) first = i;
    ++(std::isnan(x) ? nan : inf);
  }
  if (first < 0) return absl::OkStatus();
  int64_t row = first / sum.columns;
  int64_t column = first % sum.columns;
  if (sum.upper) {  // Row i of the triangle holds columns i..C-1.
    row = 0;
    while (first >= sum.columns - row) first -= sum.columns - row++;
    column = row + first;
  }
  return absl::InvalidArgumentError(absl::StrCat("Hessian sum has non-finite values (", nan,
                                                 " NaN, ", inf, " Inf; first at row ", row,
                                                 ", column ", column, ")"));
}

absl::Status AddHessianSum(absl::string_view addend, std::string* sum) {
  absl::StatusOr<HessianSumView> into = ParseHessianSum(*sum);
  if (!into.ok()) return into.status();
  absl::StatusOr<HessianSumView> from = ParseHessianSum(addend);
  if (!from.ok()) return from.status();
  if (from->columns != into->columns) {
    return absl::InvalidArgumentError(absl::StrCat("cannot add a ", from->columns,
                                                   "-column Hessian sum to a ", into->columns,
                                                   "-column one"));
  }
  if (from->upper != into->upper) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot add a Hessian sum of format version ", from->upper ? 2 : 1,
        " to one of version ", into->upper ? 2 : 1, " (upper triangle and full)"));
  }
  if (from->rows > std::numeric_limits<int64_t>::max() - into->rows) {
    return absl::InvalidArgumentError(absl::StrCat("Hessian sums of ", into->rows, " and ",
                                                   from->rows, " rows overflow the row count"));
  }
  const int64_t rows = into->rows + from->rows;
  std::memcpy(sum->data() + kRowsOffset, &rows, sizeof(rows));
  char* dst = sum->data() + kHessianHeaderBytes;
  const int64_t n = into->elements();
  for (int64_t i = 0; i < n; ++i) {
    double a;
    std::memcpy(&a, dst + i * sizeof(double), sizeof(double));
    a += from->At(i);
    std::memcpy(dst + i * sizeof(double), &a, sizeof(double));
  }
  return absl::OkStatus();
}

}  // namespace baq
