#include "coordinator/parallel_run.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/engine_capabilities.h"
#include "common/measurement_store.h"
#include "common/status_macros.h"

namespace baq::coordinator {

absl::StatusOr<bool> ParallelRun::ReuseKeptMeasurement() {
  const std::string& kept_dir = run_.config.measurement_dir;
  if (kept_dir.empty()) return false;
  absl::StatusOr<int64_t> kept = ::baq::FindReusableMeasurement(kept_dir, run_.config);
  if (kept.ok()) {
    run_.log(absl::StrCat("reusing the measurement in ", kept_dir, " (", *kept, " blocks)"));
    return true;
  }
  if (!absl::IsNotFound(kept.status())) return kept.status();
  return false;
}

absl::Status ParallelRun::Run() {
  BAQ_ASSIGN_OR_RETURN(reuse_, ReuseKeptMeasurement());
  const int64_t n = run_.num_blocks;
  const bool several = targets_.size() > 1;
  run_.progress.set_units_total(static_cast<int64_t>(2 * targets_.size()) * n);
  for (size_t t = 0; t < targets_.size(); ++t) {
    TargetOutput& target = *targets_[t];
    const double bits = target.config().quant.target_bits;
    run_.progress.set_stage_report(&target.report());
    const std::string of_target = several ? absl::StrFormat(" (target %g bits)", bits) : "";
    if (several) {
      for (BlockEngine* e : run_.all_engines) {
        BAQ_ASSIGN_OR_RETURN(TargetSwitching * switching, RequireCapability<TargetSwitching>(*e));
        BAQ_RETURN_IF_ERROR(
            switching->SetTarget(bits, /*keep_measurement=*/t + 1 < targets_.size()));
      }
    }
    BAQ_ASSIGN_OR_RETURN(std::vector<BlockMeasurement> measurements, MeasureAll(t, of_target));
    const std::string& kept_dir = run_.config.measurement_dir;
    if (t == 0 && !kept_dir.empty() && !reuse_) {
      BAQ_RETURN_IF_ERROR(CompleteMeasurement(kept_dir, run_.config, n));
      run_.log(absl::StrCat("kept the measurement in ", kept_dir));
    }
    BAQ_RETURN_IF_ERROR(QuantizeAll(target, measurements, of_target));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<BlockMeasurement>> ParallelRun::MeasureAll(
    size_t t, const std::string& of_target) {
  auto engine_of = [this](int64_t b) { return run_.engines.For(b); };
  std::vector<BlockMeasurement> measurements;
  for (int64_t b = 0; b < run_.num_blocks; ++b) {
    BAQ_RETURN_IF_ERROR(run_.CheckCancel());
    // Activations cross workers only when the first pass computes them.
    if (t == 0 && !reuse_ && b > 0 && engine_of(b - 1) != engine_of(b)) {
      BAQ_ASSIGN_OR_RETURN(ActivationTransfer * from,
                           RequireCapability<ActivationTransfer>(*engine_of(b - 1)));
      BAQ_ASSIGN_OR_RETURN(ActivationTransfer * to,
                           RequireCapability<ActivationTransfer>(*engine_of(b)));
      BAQ_ASSIGN_OR_RETURN(std::string bytes, from->ExportInputs(b));
      BAQ_RETURN_IF_ERROR(to->ImportInputs(b, std::move(bytes)));
    }
    run_.progress.Report(JobStage::kMeasuring, b, 0, 0, absl::StrCat("block ", b, of_target));
    BAQ_ASSIGN_OR_RETURN(BlockMeasurement m, engine_of(b)->Measure(b));
    measurements.push_back(std::move(m));
    run_.progress.AddUnits(1);
  }
  return measurements;
}

absl::Status ParallelRun::QuantizeAll(TargetOutput& target,
                                      const std::vector<BlockMeasurement>& measurements,
                                      const std::string& of_target) {
  BitBudget& budget = target.budget();
  BAQ_ASSIGN_OR_RETURN(auto allocs, budget.AllocateAll(measurements));
  for (const std::vector<LayerAllocation>& a : allocs) target.report().AddAllocation(a);
  for (int64_t b = 0; b < run_.num_blocks; ++b) {
    BAQ_RETURN_IF_ERROR(run_.CheckCancel());
    run_.progress.Report(JobStage::kQuantizing, b, b, budget.achieved_bits(),
                         absl::StrCat("block ", b, of_target));
    BAQ_ASSIGN_OR_RETURN(BlockOutput output, run_.engines.For(b)->Quantize(b, allocs[b]));
    run_.progress.AddUnits(1);
    budget.Record(output);
    BAQ_RETURN_IF_ERROR(target.AddBlock(output));
  }
  return absl::OkStatus();
}

}  // namespace baq::coordinator
