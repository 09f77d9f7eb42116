#include "worker/activation_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "worker/model/tensor_convert.h"
#include "worker/torch_call.h"

namespace baq::worker {
namespace {

constexpr char kMagic[4] = {'B', 'A', 'Q', 'A'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxDims = 8;

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

}  // namespace

absl::StatusOr<std::string> EncodeActivations(const at::Tensor& activations) {
  BAQ_ASSIGN_OR_RETURN(DType dtype, ToDType(activations.scalar_type()));
  BAQ_ASSIGN_OR_RETURN(std::string payload, TensorToBytes(activations, dtype));
  std::string out(kMagic, sizeof(kMagic));
  Put<uint32_t>(out, kVersion);
  Put<uint32_t>(out, static_cast<uint32_t>(dtype));
  Put<uint32_t>(out, static_cast<uint32_t>(activations.dim()));
  for (int64_t d : activations.sizes()) Put<int64_t>(out, d);
  out += payload;
  return out;
}

absl::StatusOr<at::Tensor> DecodeActivations(absl::string_view bytes, at::Device device) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("activation hand-off: ", what));
  };
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, 4) != 0) {
    return bad("bad magic");
  }
  bytes.remove_prefix(4);
  uint32_t version = 0, dtype_raw = 0, ndim = 0;
  if (!Get(bytes, &version) || !Get(bytes, &dtype_raw) || !Get(bytes, &ndim)) {
    return bad("truncated header");
  }
  if (version != kVersion) return bad(absl::StrCat("unsupported version ", version));
  if (dtype_raw > static_cast<uint32_t>(DType::kU8)) return bad("unknown dtype");
  if (ndim > kMaxDims) return bad(absl::StrCat(ndim, " dimensions"));
  const DType dtype = static_cast<DType>(dtype_raw);
  std::vector<int64_t> shape(ndim);
  uint64_t elements = 1;
  for (uint32_t i = 0; i < ndim; ++i) {
    if (!Get(bytes, &shape[i]) || shape[i] < 0) return bad("bad shape");
    if (shape[i] != 0 && elements > (uint64_t{1} << 40) / static_cast<uint64_t>(shape[i])) {
      return bad("shape too large");
    }
    elements *= static_cast<uint64_t>(shape[i]);
  }
  if (bytes.size() != elements * DTypeSize(dtype)) {
    return bad(absl::StrCat("payload has ", bytes.size(), " bytes, shape needs ",
                            elements * DTypeSize(dtype)));
  }
  return CallTorch("decode activations", [&] {
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(ToScalarType(dtype)));
    std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
    return t.to(device);
  });
}

}  // namespace baq::worker
