#include "worker/engine/measurement_cache.h"

#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/measurement_store.h"
#include "common/safetensors.h"
#include "common/safetensors_writer.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/engine/block_compute.h"
#include "worker/model/tensor_convert.h"

namespace baq::worker {

absl::Status MeasurementCache::Open(const EngineJob& job) {
  use_ = Use::kNone;
  const std::string& dir = job.config.measurement_dir;
  if (dir.empty()) return absl::OkStatus();
  absl::StatusOr<int64_t> kept = FindReusableMeasurement(dir, job.config);
  if (kept.ok()) {
    if (*kept != job.model.num_layers) {
      return absl::FailedPreconditionError(absl::StrCat("the measurement in ", dir, " has ",
                                                        *kept, " blocks, the model ",
                                                        job.model.num_layers));
    }
    use_ = Use::kReuse;
    return absl::OkStatus();
  }
  if (!absl::IsNotFound(kept.status())) return kept.status();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create measurement dir ", dir, ": ", ec.message()));
  }
  use_ = Use::kSave;
  return absl::OkStatus();
}

void MeasurementCache::Clear() {
  blocks_.clear();
  use_ = Use::kNone;
  keep_measurement_ = false;
}

BlockState* MeasurementCache::Find(int64_t block) {
  auto it = blocks_.find(block);
  return it == blocks_.end() ? nullptr : &it->second;
}

void MeasurementCache::Done(int64_t block) {
  if (!keep_measurement_) blocks_.erase(block);
}

absl::Status MeasurementCache::Save(const EngineJob& job, int64_t block,
                                    const BlockState& state) const {
  const std::vector<LinearLayerSpec>& specs = state.block->linear_layers();
  const std::string path = MeasurementBlockPath(job.config.measurement_dir, block);
  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> w, SafetensorsWriter::Create(path));
  for (size_t i = 0; i < specs.size(); ++i) {
    BAQ_ASSIGN_OR_RETURN(std::string bytes, TensorToBytes(state.hessians[i], DType::kF32));
    BAQ_RETURN_IF_ERROR(w->Add(
        specs[i].name, DType::kF32, {state.hessians[i].size(0), state.hessians[i].size(1)},
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())));
  }
  w->SetMetadata("hessian_partials", absl::StrCat(job.num_partials));
  w->SetMetadata("calibration_tokens", absl::StrCat(job.calibration_tokens));
  return Annotate(w->Finish(), absl::StrCat("keeping the measurement of block ", block));
}

absl::StatusOr<BlockState> MeasurementCache::LoadKept(DeviceGroup& group, const EngineJob& job,
                                                      int64_t block) const {
  const std::string path = MeasurementBlockPath(job.config.measurement_dir, block);
  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  auto meta = file->metadata().find("hessian_partials");
  if (meta == file->metadata().end() || meta->second != absl::StrCat(job.num_partials)) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": measured with hessian_partials = ",
        meta == file->metadata().end() ? "?" : meta->second, ", this engine uses ",
        job.num_partials, " (the bits would differ); use the same --hessian_partials"));
  }
  const int world = group.world();
  BlockState state;
  BAQ_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<DecoderBlock>> replicas,
                       LoadReplicas(group, job, block));
  const std::vector<LinearLayerSpec>& specs = replicas[0]->linear_layers();
  for (size_t i = 0; i < specs.size(); ++i) {
    const at::Device device = group.device(world == 1 ? 0 : static_cast<int>(i % world));
    BAQ_ASSIGN_OR_RETURN(TensorView view, Annotate(file->Get(specs[i].name),
                                                   absl::StrCat("kept measurement ", path)));
    const std::vector<int64_t> want = {specs[i].in_features, specs[i].in_features};
    if (view.dtype != DType::kF32 || view.shape != want) {
      return absl::DataLossError(absl::StrCat(path, ": ", specs[i].name, " is not an F32 ",
                                              ShapeString(want), " Hessian"));
    }
    BAQ_ASSIGN_OR_RETURN(at::Tensor h, CopyTensorFromView(view, device, at::kFloat));
    state.hessians.push_back(std::move(h));
  }
  state.block = std::move(replicas[0]);
  for (int r = 1; r < world; ++r) state.replicas.push_back(std::move(replicas[r]));
  return state;
}

}  // namespace baq::worker
