#include "coordinator/job_runner.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/model_config.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "coordinator/bit_budget.h"
#include "coordinator/calibration_shards.h"
#include "coordinator/eval_gate.h"
#include "coordinator/job_checkpoint.h"
#include "common/measurement_store.h"
#include "coordinator/job_store.h"
#include "coordinator/output_assembler.h"
#include "coordinator/quant_report.h"
#include "nlohmann/json.hpp"

namespace baq::coordinator {

absl::string_view JobStageName(JobStage stage) {
  switch (stage) {
    case JobStage::kQueued: return "queued";
    case JobStage::kStarting: return "starting";
    case JobStage::kMeasuring: return "measuring";
    case JobStage::kQuantizing: return "quantizing";
    case JobStage::kPublishing: return "publishing";
    case JobStage::kDone: return "done";
  }
  return "?";
}

namespace {

// Work units for progress: measuring and quantizing a block count one each.
struct ProgressClock {
  absl::Time start = absl::Now();
  int64_t units_total = 1;
  int64_t units_done = 0;

  void Fill(JobProgress& p) const {
    p.elapsed = absl::Now() - start;
    p.percent = 100.0 * static_cast<double>(units_done) / static_cast<double>(units_total);
    p.eta = units_done == 0
                ? absl::InfiniteDuration()
                : p.elapsed * (static_cast<double>(units_total - units_done) /
                               static_cast<double>(units_done));
  }
};

nlohmann::json LayerJson(const LayerReport& l) {
  const double elements = static_cast<double>(l.rows * l.columns);
  nlohmann::json j = {{"name", l.name},           {"rows", l.rows},
                      {"columns", l.columns},     {"bits", elements > 0 ? l.bits_sum / elements : 0.0},
                      {"proxy_loss", l.proxy_loss}, {"seconds", l.seconds},
                      {"gptq_bits", l.gptq_bits},   {"gptq_proxy_loss", l.gptq_proxy_loss}};
  if (l.expert_tokens >= 0) {  // MoE experts: issue 18's starved-expert report.
    j["calibration_tokens"] = l.expert_tokens;
    j["top_up_tokens"] = l.expert_top_up_tokens;
  }
  return j;
}

struct ResumePoint {
  int64_t first_block = 0;  // The first block not in the checkpoint.
  std::string inputs;       // Its inputs (empty for block 0).
  CheckpointState state;
};

// Reads `checkpoint` back: hands the finished blocks to `publish` in order,
// restores `budget`, and counts the resume. A checkpoint of another config
// or one that cannot be read is discarded (the job starts over: slower,
// never wrong).
absl::StatusOr<ResumePoint> Resume(JobCheckpoint& checkpoint, int64_t num_blocks,
                                   BitBudget& budget,
                                   const std::function<absl::Status(const BlockOutput&)>& publish) {
  ResumePoint point;
  point.state.num_blocks = num_blocks;
  absl::StatusOr<CheckpointState> state = checkpoint.Load();
  if (!state.ok()) {
    if (!absl::IsNotFound(state.status())) {
      std::cerr << "baq-coordinator: discarding checkpoint " << checkpoint.dir() << ": "
                << state.status() << std::endl;
      checkpoint.Remove();
    }
    return point;
  }
  if (state->num_blocks != num_blocks) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint ", checkpoint.dir(), " has ", state->num_blocks,
                     " blocks, the model ", num_blocks, ": was the model changed?"));
  }
  for (int64_t b = 0; b < state->blocks_done; ++b) {
    BAQ_ASSIGN_OR_RETURN(BlockOutput output, checkpoint.LoadBlock(b));
    BAQ_RETURN_IF_ERROR(publish(output));
  }
  budget.Restore(state->budget);
  if (state->blocks_done > 0 && state->blocks_done < num_blocks) {
    BAQ_ASSIGN_OR_RETURN(point.inputs, checkpoint.LoadInputs(state->blocks_done));
  }
  point.first_block = state->blocks_done;
  point.state = *state;
  ++point.state.resumes;
  BAQ_RETURN_IF_ERROR(checkpoint.SaveState(point.state));
  std::cerr << "baq-coordinator: resuming from " << checkpoint.dir() << ": " << state->blocks_done
            << " of " << num_blocks << " blocks done, " << state->worker_failures
            << " worker failure(s) so far, resume " << point.state.resumes << std::endl;
  return point;
}

}  // namespace

// One bit target's output in the making: its budget, assembler, report rows.
struct JobRunner::TargetBuild {
  JobConfig config;  // The job narrowed to this target (JobConfig::ForTarget).
  std::unique_ptr<OutputAssembler> out;
  std::unique_ptr<BitBudget> budget;
  QuantReport extra;  // Stage times, bit histograms, reference losses.
  nlohmann::json layers = nlohmann::json::array();
  nlohmann::json gptq_module_bits = nlohmann::json::object();
  double total_proxy_loss = 0;

  TargetBuild(JobConfig c, const ModelConfig& model)
      : config(std::move(c)), extra(config.quant) {
    const bool want_gptq = std::find(config.formats.begin(), config.formats.end(),
                                     OutputFormat::kGptq) != config.formats.end();
    budget = std::make_unique<BitBudget>(config.quant, config.mode, model.QuantizableElements(),
                                         want_gptq);
  }

  // Hands a quantized block to the report and the assembler (the budget has
  // recorded it already).
  absl::Status AddBlock(const BlockOutput& output) {
    for (const LayerReport& l : output.layers) {
      layers.push_back(LayerJson(l));
      if (l.gptq_bits > 0) gptq_module_bits[l.name] = l.gptq_bits;
      total_proxy_loss += l.proxy_loss;
    }
    return out->AddBlock(output);
  }
};

JobRunner::JobRunner(JobConfig config, std::vector<BlockEngine*> engines, ProgressFn progress,
                     JobRunnerOptions options)
    : config_(std::move(config)),
      engines_(std::move(engines)),
      progress_(std::move(progress)),
      options_(std::move(options)) {}

void JobRunner::Log(const std::string& line) const {
  std::cerr << "baq-coordinator: job " << (options_.job_id.empty() ? "?" : options_.job_id)
            << ": " << line << std::endl;
}

absl::StatusOr<JobSummary> JobRunner::Run() {
  BAQ_RETURN_IF_ERROR(config_.Validate());
  if (engines_.empty()) return absl::FailedPreconditionError("no workers to run the job on");
  BAQ_ASSIGN_OR_RETURN(ModelConfig model, LoadModelConfig(config_.model_dir));
  ProgressClock clock;
  JobProgress p;
  // The target whose quant_report.json records the stage times.
  QuantReport* stage_report = nullptr;
  auto report = [&](JobStage stage, int64_t block, int64_t blocks_done, double bits,
                    std::string message) {
    p.stage = stage;
    if (stage_report != nullptr) stage_report->EnterStage(JobStageName(stage));
    p.block = block;
    p.blocks_done = blocks_done;
    p.achieved_bits = bits;
    p.message = std::move(message);
    clock.Fill(p);
    if (progress_) progress_(p);
  };
  auto check_cancel = [&]() -> absl::Status {
    if (cancelled_.load()) return absl::CancelledError("job cancelled");
    return absl::OkStatus();
  };
  const bool sequential = config_.mode == ExecutionMode::kSequential;
  const bool recovery = sequential && options_.recovery();
  // Calibration shards (coordinator/calibration_shards.h; sequential only).
  const bool sharded = config_.calibration_shards > 1;

  // One output per bit target (JobConfig::AllTargets); all are created up
  // front so that an existing output fails the job before any work.
  const std::vector<double> all_targets = config_.AllTargets();
  if (all_targets.size() > 1) {
    std::error_code ec;
    std::filesystem::create_directories(config_.output_dir, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot create output dir ", config_.output_dir, ": ", ec.message()));
    }
  }
  std::vector<std::unique_ptr<TargetBuild>> targets;
  for (double t : all_targets) {
    targets.push_back(std::make_unique<TargetBuild>(config_.ForTarget(t), model));
    BAQ_ASSIGN_OR_RETURN(targets.back()->out, OutputAssembler::Create(targets.back()->config));
  }
  TargetBuild& primary = *targets.front();
  BitBudget& budget = *primary.budget;
  QuantReport& extra = primary.extra;
  auto publish_block = [&](const BlockOutput& output) { return primary.AddBlock(output); };
  stage_report = &primary.extra;

  report(JobStage::kStarting, -1, 0, 0, "loading model and calibration data");
  EngineSet::Options set_options;
  set_options.max_worker_failures = options_.max_worker_failures;
  set_options.replacement_wait = options_.replacement_wait;
  set_options.survive_losses = recovery;
  if (recovery) set_options.more_engines = options_.more_engines;
  set_options.log = [this](const std::string& line) { Log(line); };
  EngineSet engines(engines_, set_options, &cancelled_);
  BAQ_RETURN_IF_ERROR(engines.StartAll(config_));
  const int64_t n = engines.num_blocks();
  p.num_blocks = n;
  clock.units_total = 2 * n;
  engines.Plan(0, n);

  std::unique_ptr<JobCheckpoint> checkpoint;
  if (sequential) {
    CheckpointState state;
    state.num_blocks = n;
    int64_t first = 0;
    // The inputs of block b, exported after b-1 (recovery mode).
    std::string inputs;
    if (recovery && !options_.checkpoint_dir.empty()) {
      checkpoint = std::make_unique<JobCheckpoint>(options_.checkpoint_dir,
                                                   JobConfigToJson(config_));
      BAQ_ASSIGN_OR_RETURN(ResumePoint resume, Resume(*checkpoint, n, budget, publish_block));
      first = resume.first_block;
      state = resume.state;
      inputs = std::move(resume.inputs);
      engines.set_failures(static_cast<int>(state.worker_failures));
      if (first > 0) {
        clock.units_done = 2 * first;
        report(JobStage::kQuantizing, first, first, budget.achieved_bits(),
               absl::StrCat("resumed from the checkpoint: ", first, " of ", n, " blocks done"));
      }
      engines.Plan(first, n);
    }
    // The engine holding the inputs of block b when it is not `inputs`
    // (every started engine holds block 0's after Start).
    BlockEngine* holder = nullptr;
    // Sharded jobs: each block runs on the live engines, the shards dealt
    // over them; in recovery mode `inputs` packs every shard's inputs.
    ShardedBlock shard_run(config_.calibration_shards);
    for (int64_t b = first; b < n;) {
      BAQ_RETURN_IF_ERROR(check_cancel());
      BlockEngine* e = engines.For(b);
      const BitBudget::State before = budget.state();
      std::string next_inputs;
      // Calls on `e`; errors here may be the worker's loss.
      absl::Status engine_status = [&]() -> absl::Status {
        if (sharded) {
          shard_run.Assign(engines.Live());
          if (recovery) {
            if (inputs.empty()) {  // Block 0 and no checkpoint: every engine has it.
              BAQ_ASSIGN_OR_RETURN(std::vector<std::string> all, shard_run.ExportAllFromFirst(b));
              inputs = PackShardInputs(all);
            }
            BAQ_ASSIGN_OR_RETURN(std::vector<std::string> parts,
                                 UnpackShardInputs(inputs, config_.calibration_shards));
            BAQ_RETURN_IF_ERROR(shard_run.ImportInputs(b, std::move(parts)));
          }
        } else if (b > 0 && e != holder) {
          if (recovery) {
            BAQ_RETURN_IF_ERROR(e->ImportInputs(b, inputs));
          } else {
            BAQ_ASSIGN_OR_RETURN(std::string bytes, holder->ExportInputs(b));
            BAQ_RETURN_IF_ERROR(e->ImportInputs(b, std::move(bytes)));
          }
        }
        report(JobStage::kMeasuring, b, b, budget.achieved_bits(), absl::StrCat("block ", b));
        BAQ_ASSIGN_OR_RETURN(BlockMeasurement m, sharded ? shard_run.Measure(b) : e->Measure(b));
        BAQ_ASSIGN_OR_RETURN(std::vector<LayerAllocation> alloc, budget.AllocateBlock(m));
        extra.AddAllocation(alloc);
        report(JobStage::kQuantizing, b, b, budget.achieved_bits(), absl::StrCat("block ", b));
        BAQ_ASSIGN_OR_RETURN(BlockOutput output,
                             sharded ? shard_run.Quantize(b, alloc) : e->Quantize(b, alloc));
        if (recovery && b + 1 < n && sharded) {
          BAQ_ASSIGN_OR_RETURN(std::vector<std::string> parts, shard_run.ExportInputs(b + 1));
          next_inputs = PackShardInputs(parts);
        } else if (recovery && b + 1 < n) {
          BAQ_ASSIGN_OR_RETURN(next_inputs, e->ExportInputs(b + 1));
        }
        budget.Record(output);
        if (checkpoint != nullptr) {
          state.blocks_done = b + 1;
          state.budget = budget.state();
          state.worker_failures = engines.failures();
          BAQ_RETURN_IF_ERROR(Annotate(
              checkpoint->SaveBlock(output, b + 1 < n ? &next_inputs : nullptr, state),
              absl::StrCat("checkpointing block ", b)));
        }
        return publish_block(output);
      }();
      if (engine_status.ok()) {
        clock.units_done += 2;
        // An engine's ExportInputs hands its copy over (sequential mode), so
        // in recovery mode every block imports the checkpointed inputs.
        holder = recovery ? nullptr : e;
        inputs = std::move(next_inputs);
        ++b;
        continue;
      }
      if (!recovery || cancelled_.load()) return engine_status;
      budget.Restore(before);
      const absl::Time lost = absl::Now();
      // A sharded block's failure names its engine (none: not a worker's).
      BlockEngine* failed = sharded ? shard_run.failed() : e;
      if (failed == nullptr) return engine_status;
      BAQ_RETURN_IF_ERROR(engines.Fail(failed, engine_status, config_));
      if (holder == failed) holder = nullptr;
      engines.Plan(b, n);
      if (checkpoint != nullptr) {
        state.worker_failures = engines.failures();
        BAQ_RETURN_IF_ERROR(checkpoint->SaveState(state));
      }
      const std::string msg = absl::StrFormat(
          "worker lost at block %d (%s); redoing it on %d live engine(s) after %s, failure %d "
          "of at most %d",
          b, engine_status.message(), engines.live(), absl::FormatDuration(absl::Now() - lost),
          engines.failures(), options_.max_worker_failures);
      Log(msg);
      report(JobStage::kMeasuring, b, b, budget.achieved_bits(), msg);
    }
  } else {
    // Parallel mode: every block's Hessians from the unquantized model, so
    // one measurement serves every target (and is kept or reused on disk
    // with measurement_dir). Each target: pass 1 at its reference width from
    // the kept Hessians, the exact global allocation, then quantize.
    const std::string& kept_dir = config_.measurement_dir;
    bool reuse = false;
    if (!kept_dir.empty()) {
      absl::StatusOr<int64_t> kept = FindReusableMeasurement(kept_dir, config_);
      if (kept.ok()) {
        reuse = true;
        Log(absl::StrCat("reusing the measurement in ", kept_dir, " (", *kept, " blocks)"));
      } else if (!absl::IsNotFound(kept.status())) {
        return kept.status();
      }
    }
    const bool several = targets.size() > 1;
    auto engine_of = [&](int64_t b) { return engines.For(b); };
    clock.units_total = static_cast<int64_t>(2 * targets.size()) * n;
    for (size_t t = 0; t < targets.size(); ++t) {
      TargetBuild& target = *targets[t];
      const double bits = target.config.quant.target_bits;
      stage_report = &target.extra;
      const std::string of_target = several ? absl::StrFormat(" (target %g bits)", bits) : "";
      if (several) {
        for (BlockEngine* e : engines_) {
          BAQ_RETURN_IF_ERROR(e->SetTarget(bits, /*keep_measurement=*/t + 1 < targets.size()));
        }
      }
      std::vector<BlockMeasurement> measurements;
      for (int64_t b = 0; b < n; ++b) {
        BAQ_RETURN_IF_ERROR(check_cancel());
        // Activations cross workers only when the first pass computes them.
        if (t == 0 && !reuse && b > 0 && engine_of(b - 1) != engine_of(b)) {
          BAQ_ASSIGN_OR_RETURN(std::string bytes, engine_of(b - 1)->ExportInputs(b));
          BAQ_RETURN_IF_ERROR(engine_of(b)->ImportInputs(b, std::move(bytes)));
        }
        report(JobStage::kMeasuring, b, 0, 0, absl::StrCat("block ", b, of_target));
        BAQ_ASSIGN_OR_RETURN(BlockMeasurement m, engine_of(b)->Measure(b));
        measurements.push_back(std::move(m));
        ++clock.units_done;
      }
      if (t == 0 && !kept_dir.empty() && !reuse) {
        BAQ_RETURN_IF_ERROR(CompleteMeasurement(kept_dir, config_, n));
        Log(absl::StrCat("kept the measurement in ", kept_dir));
      }
      BAQ_ASSIGN_OR_RETURN(auto allocs, target.budget->AllocateAll(measurements));
      for (const std::vector<LayerAllocation>& a : allocs) target.extra.AddAllocation(a);
      for (int64_t b = 0; b < n; ++b) {
        BAQ_RETURN_IF_ERROR(check_cancel());
        report(JobStage::kQuantizing, b, b, target.budget->achieved_bits(),
               absl::StrCat("block ", b, of_target));
        BAQ_ASSIGN_OR_RETURN(BlockOutput output, engine_of(b)->Quantize(b, allocs[b]));
        ++clock.units_done;
        target.budget->Record(output);
        BAQ_RETURN_IF_ERROR(target.AddBlock(output));
      }
    }
  }

  // Publish every target's output (each gated on its own); a failed gate
  // keeps that output unpublished and fails the job after the others.
  JobSummary summary;
  absl::Status gate_failure;
  for (size_t t = 0; t < targets.size(); ++t) {
    stage_report = &targets[t]->extra;
    BAQ_ASSIGN_OR_RETURN(TargetSummary ts, FinishTarget(*targets[t], engines.For(n - 1), n, report,
                                                        check_cancel));
    if (!ts.gate_status.ok() && gate_failure.ok()) gate_failure = ts.gate_status;
    summary.targets.push_back(std::move(ts));
  }
  static_cast<TargetSummary&>(summary) = summary.targets.front();
  summary.output_dir = config_.output_dir;
  if (!gate_failure.ok()) return gate_failure;  // The failing outputs are removed.
  // Published: the checkpoint has served its purpose.
  if (checkpoint != nullptr) checkpoint->Remove();
  for (BlockEngine* e : engines_) e->Reset();
  summary.wall_time = absl::Now() - clock.start;
  report(JobStage::kDone, -1, n, summary.achieved_bits,
         absl::StrFormat("achieved %.4f bits (target %.4f)", summary.achieved_bits,
                         summary.target_bits));
  return summary;
}

absl::StatusOr<TargetSummary> JobRunner::FinishTarget(
    TargetBuild& target, BlockEngine* gate_engine, int64_t n,
    const std::function<void(JobStage, int64_t, int64_t, double, std::string)>& report,
    const std::function<absl::Status()>& check_cancel) {
  const JobConfig& config = target.config;
  const BitBudget& budget = *target.budget;
  BAQ_RETURN_IF_ERROR(check_cancel());
  report(JobStage::kPublishing, -1, n, budget.achieved_bits(),
         absl::StrCat("writing output ", config.output_dir));
  TargetSummary summary;
  summary.output_dir = config.output_dir;
  summary.target_bits = config.quant.target_bits;
  summary.achieved_bits = budget.achieved_bits();
  summary.allocation = budget.scope_name();
  summary.total_proxy_loss = target.total_proxy_loss;
  summary.quantized_elements = budget.elements_done();
  nlohmann::json rep = {
      {"quantizer", "baq"},
      {"method", std::string(QuantMethodName(config.quant.method))},
      {"mode", std::string(ExecutionModeName(config.mode))},
      {"allocation", summary.allocation},
      {"target_bits", summary.target_bits},
      {"achieved_bits", summary.achieved_bits},
      {"quantized_elements", summary.quantized_elements},
      {"total_proxy_loss", summary.total_proxy_loss},
      {"calibration",
       {{"files", config.calibration.files},
        {"num_samples", config.calibration.num_samples},
        {"seqlen", config.calibration.seqlen},
        {"seed", config.calibration.seed}}},
      {"layers", target.layers}};
  if (!config_.measurement_dir.empty()) rep["measurement_dir"] = config_.measurement_dir;
  if (!target.gptq_module_bits.empty()) {
    rep["gptq_module_bits"] = target.gptq_module_bits;
    rep["gptq_default_bits"] = static_cast<int>(std::lround(config.quant.target_bits));
  }
  for (const auto& [scope, loss] : budget.reference_losses()) {
    target.extra.AddReferenceLoss(scope, loss);
  }
  target.extra.MergeInto(rep);
  BAQ_RETURN_IF_ERROR(target.out->Stage(rep));
  if (config.eval_gate.enabled()) {  // Evaluate the staged output (coordinator/eval_gate.h).
    report(JobStage::kPublishing, -1, n, budget.achieved_bits(),
           absl::StrCat("evaluating the gate of ", config.output_dir));
    BAQ_ASSIGN_OR_RETURN(const EvalGateResult gate,
                         RunEvalGate(config.eval_gate, config.model_dir,
                                     target.out->StagedDir(OutputFormat::kFakeQuant),
                                     *gate_engine));
    BAQ_RETURN_IF_ERROR(check_cancel());
    Log(absl::StrCat(config.output_dir, ": ", EvalGateSummary(gate)));
    rep["eval_gate"] = EvalGateJson(gate);
    summary.eval_gate_ppl = gate.ppl;
    summary.eval_gate_base_ppl = gate.base_ppl;
    if (!gate.passed) {
      summary.gate_status = GateFailedError(gate);
      target.out.reset();  // Removes the staged output.
      return summary;
    }
  }
  BAQ_RETURN_IF_ERROR(target.out->Publish(rep));
  summary.published = true;
  return summary;
}

}  // namespace baq::coordinator
