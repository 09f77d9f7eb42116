#include "worker/calibration_inputs.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/text_dataset.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {

absl::StatusOr<at::Tensor> LoadCalibrationIds(const CalibrationConfig& config,
                                              const BpeTokenizer& tokenizer) {
  CalibrationOptions options;
  options.num_windows = config.num_samples;
  options.window_tokens = config.seqlen;
  options.seed = config.seed;
  options.sampler = WindowSampler::kPython;
  BAQ_ASSIGN_OR_RETURN(TokenWindows windows,
                       LoadCalibrationSet(tokenizer, config.files, options));
  return CallTorch("calibration ids", [&] {
    at::Tensor ids = at::empty({windows.num_windows(), windows.window_tokens}, at::kLong);
    int64_t* p = ids.data_ptr<int64_t>();
    for (size_t i = 0; i < windows.ids.size(); ++i) p[i] = windows.ids[i];
    return ids;
  });
}

namespace {

// Context of every spill mapping; its deleter unmaps (the file was unlinked
// when it was created, so its blocks are freed with the mapping).
struct SpillMapping {
  void* address = nullptr;
  size_t bytes = 0;
};

void ReleaseSpillMapping(void* context) {
  auto* m = static_cast<SpillMapping*>(context);
  if (m->address != nullptr) munmap(m->address, m->bytes);
  delete m;
}

absl::StatusOr<at::Tensor> SpilledTensor(at::IntArrayRef shape, at::ScalarType dtype,
                                         size_t bytes, const std::string& dir_option) {
  std::error_code ec;
  const std::string dir =
      dir_option.empty() ? std::filesystem::temp_directory_path(ec).string() : dir_option;
  if (ec || !std::filesystem::is_directory(dir, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("activation spill dir \"", dir, "\" is not a directory"));
  }
  std::string path = dir + "/baq-activations-XXXXXX";
  std::vector<char> name(path.begin(), path.end());
  name.push_back('\0');
  const int fd = mkstemp(name.data());
  if (fd < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot create a spill file in ", dir, ": ",
                                                   std::strerror(errno)));
  }
  unlink(name.data());  // Anonymous from now on: freed when unmapped, even after a crash.
  if (posix_fallocate(fd, 0, static_cast<off_t>(bytes)) != 0 &&
      ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    close(fd);
    return absl::ResourceExhaustedError(absl::StrCat("cannot size a ", bytes,
                                                     "-byte activation spill file in ", dir,
                                                     ": ", std::strerror(err)));
  }
  void* address = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int err = errno;
  close(fd);  // The mapping keeps the file.
  if (address == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot map a ", bytes,
                                                     "-byte activation spill file in ", dir,
                                                     ": ", std::strerror(err)));
  }
  auto* mapping = new SpillMapping{address, bytes};
  // The storage owns the mapping through its deleter, which IsSpilled() also
  // recognizes (at::from_blob's deleter wrapper would hide it).
  at::DataPtr data(address, mapping, &ReleaseSpillMapping, at::kCPU);
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t d = static_cast<int64_t>(shape.size()) - 2; d >= 0; --d) {
    strides[d] = strides[d + 1] * shape[d + 1];
  }
  return CallTorch("spilled activations", [&] {
    c10::Storage storage(c10::Storage::use_byte_size_t(), static_cast<int64_t>(bytes),
                         std::move(data), /*allocator=*/nullptr, /*resizable=*/false);
    return at::empty({0}, at::TensorOptions().dtype(dtype).device(at::kCPU))
        .set_(storage, 0, shape, strides);
  });
}

}  // namespace

absl::StatusOr<at::Tensor> AllocateActivations(at::IntArrayRef shape, at::ScalarType dtype,
                                               at::Device device,
                                               const ActivationSpillOptions& options) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const int64_t bytes = numel * static_cast<int64_t>(c10::elementSize(dtype));
  if (options.memory_limit_bytes <= 0 || bytes <= options.memory_limit_bytes || bytes == 0) {
    return CallTorch("activations", [&] {
      return at::empty(shape, at::TensorOptions().dtype(dtype).device(device));
    });
  }
  return SpilledTensor(shape, dtype, static_cast<size_t>(bytes), options.spill_dir);
}

bool IsSpilled(const at::Tensor& activations) {
  return activations.defined() && activations.has_storage() &&
         activations.storage().data_ptr().get_deleter() == &ReleaseSpillMapping;
}

}  // namespace baq::worker
