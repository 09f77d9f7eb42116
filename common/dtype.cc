#include "common/dtype.h"

#include "absl/strings/str_cat.h"

namespace baq {

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  if (name == "F32") return DType::kF32;
  if (name == "F64") return DType::kF64;
  if (name == "I8") return DType::kI8;
  if (name == "I32") return DType::kI32;
  if (name == "I64") return DType::kI64;
  if (name == "U8") return DType::kU8;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dtype \"", name, "\" (supported: F16, BF16, F32, F64, I8, I32, I64, U8)"));
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kF32: return "F32";
    case DType::kF64: return "F64";
    case DType::kI8: return "I8";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kU8: return "U8";
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF16:
    case DType::kBF16: return 2;
    case DType::kF32:
    case DType::kI32: return 4;
    case DType::kF64:
    case DType::kI64: return 8;
    case DType::kI8:
    case DType::kU8: return 1;
  }
  return 0;
}

}  // namespace baq
