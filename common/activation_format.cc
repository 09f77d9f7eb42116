#include "common/activation_format.h"

#include <cstdint>
#include <cstring>

#include "absl/base/config.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace baq {
namespace {

#ifdef ABSL_IS_BIG_ENDIAN
#error "the BAQA wire format is little-endian; this codec copies host-order values"
#endif

constexpr char kMagic[4] = {'B', 'A', 'Q', 'A'};
constexpr size_t kFixedHeaderBytes = 16;  // magic, version, dtype, ndim

// The dtype codes are part of the format: never renumber, only append. A
// switch (not DType's enum values) so a new DType fails to compile here
// until it gets a code.
uint32_t DTypeCode(DType dtype) {
  switch (dtype) {
    case DType::kF16: return 0;
    case DType::kBF16: return 1;
    case DType::kF32: return 2;
    case DType::kF64: return 3;
    case DType::kI8: return 4;
    case DType::kI32: return 5;
    case DType::kI64: return 6;
    case DType::kU8: return 7;
  }
  return UINT32_MAX;
}

constexpr uint32_t kDTypeCodes = 8;

DType DTypeOfCode(uint32_t code) {
  constexpr DType kByCode[kDTypeCodes] = {DType::kF16, DType::kBF16, DType::kF32, DType::kF64,
                                          DType::kI8,  DType::kI32,  DType::kI64, DType::kU8};
  return kByCode[code];
}

template <typename T>
void Put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <typename T>
bool Get(absl::string_view& in, T* v) {
  if (in.size() < sizeof(T)) return false;
  std::memcpy(v, in.data(), sizeof(T));
  in.remove_prefix(sizeof(T));
  return true;
}

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("activations: ", what));
}

std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// The element count of `shape`, or an error past kMaxActivationElements or
// for a negative dimension.
absl::StatusOr<uint64_t> Elements(absl::Span<const int64_t> shape) {
  uint64_t elements = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) return Bad(absl::StrCat("dimension ", i, " is ", shape[i]));
    const uint64_t d = static_cast<uint64_t>(shape[i]);
    if (d != 0 && elements > kMaxActivationElements / d) {
      return Bad(absl::StrCat("shape ", ShapeString(shape), " has more than 2^40 elements"));
    }
    elements *= d;
  }
  return elements;
}

absl::Status CheckPayload(DType dtype, absl::Span<const int64_t> shape, uint64_t elements,
                          size_t payload_bytes) {
  const uint64_t want = elements * DTypeSize(dtype);
  if (payload_bytes == want) return absl::OkStatus();
  return Bad(absl::StrCat("payload has ", payload_bytes, " bytes, ", DTypeName(dtype), " ",
                          ShapeString(shape), " needs ", want));
}

}  // namespace

absl::StatusOr<std::string> EncodeActivationBytes(DType dtype, absl::Span<const int64_t> shape,
                                                  absl::string_view payload) {
  if (shape.size() > kMaxActivationDims) {
    return Bad(absl::StrCat(shape.size(), " dimensions (at most ", kMaxActivationDims, ")"));
  }
  absl::StatusOr<uint64_t> elements = Elements(shape);
  if (!elements.ok()) return elements.status();
  if (absl::Status s = CheckPayload(dtype, shape, *elements, payload.size()); !s.ok()) return s;
  std::string out;
  out.reserve(kFixedHeaderBytes + shape.size() * sizeof(int64_t) + payload.size());
  out.append(kMagic, sizeof(kMagic));
  Put<uint32_t>(out, kActivationFormatVersion);
  Put<uint32_t>(out, DTypeCode(dtype));
  Put<uint32_t>(out, static_cast<uint32_t>(shape.size()));
  for (int64_t d : shape) Put<int64_t>(out, d);
  out.append(payload.data(), payload.size());
  return out;
}

absl::StatusOr<ActivationView> ParseActivationBytes(absl::string_view bytes) {
  if (bytes.size() < kFixedHeaderBytes) {
    return Bad(absl::StrCat(bytes.size(), " bytes, shorter than the ", kFixedHeaderBytes,
                            "-byte header"));
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return Bad(absl::StrCat("magic \"", absl::CHexEscape(bytes.substr(0, 4)),
                            "\" (want \"BAQA\")"));
  }
  absl::string_view in = bytes.substr(sizeof(kMagic));
  uint32_t version = 0;
  uint32_t code = 0;
  uint32_t ndim = 0;
  Get(in, &version);
  Get(in, &code);
  Get(in, &ndim);
  if (version != kActivationFormatVersion) {
    return Bad(absl::StrCat("format version ", version, " is not supported (want ",
                            kActivationFormatVersion, ")"));
  }
  if (code >= kDTypeCodes) return Bad(absl::StrCat("unknown dtype code ", code));
  if (ndim > kMaxActivationDims) {
    return Bad(absl::StrCat(ndim, " dimensions (at most ", kMaxActivationDims, ")"));
  }
  ActivationView v;
  v.dtype = DTypeOfCode(code);
  v.shape.resize(ndim);
  for (uint32_t i = 0; i < ndim; ++i) {
    if (!Get(in, &v.shape[i])) {
      return Bad(absl::StrCat("header truncated in the shape (", ndim, " dimensions, ",
                              bytes.size(), " bytes)"));
    }
  }
  absl::StatusOr<uint64_t> elements = Elements(v.shape);
  if (!elements.ok()) return elements.status();
  if (absl::Status s = CheckPayload(v.dtype, v.shape, *elements, in.size()); !s.ok()) return s;
  v.payload = in;
  return v;
}

}  // namespace baq
