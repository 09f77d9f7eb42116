// `baq quantize`: embedded local mode — the coordinator's JobRunner driving
// one in-process TorchBlockEngine, the same code paths as the service.
#include <cstdio>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "coordinator/job_runner.h"
#include "tools/cli/cancel_on_signal.h"
#include "tools/cli/cli_output.h"
#include "tools/cli/exit_codes.h"
#include "tools/cli/local_commands.h"
#include "tools/cli/progress_bar.h"

namespace baq::cli {
namespace {

nlohmann::json TargetJson(const coordinator::TargetSummary& t) {
  return {{"target_bits", t.target_bits},
          {"achieved_bits", t.achieved_bits},
          {"proxy_loss", t.total_proxy_loss},
          {"quantized_elements", t.quantized_elements},
          {"output_dir", t.output_dir},
          {"published", t.published}};
}

nlohmann::json SummaryJson(const JobConfig& config, const coordinator::JobSummary& summary) {
  nlohmann::json formats = nlohmann::json::array();
  for (OutputFormat f : config.formats) formats.push_back(std::string(OutputFormatName(f)));
  nlohmann::json targets = nlohmann::json::array();
  for (const coordinator::TargetSummary& t : summary.targets) targets.push_back(TargetJson(t));
  return {{"ok", true},
          {"output_dir", summary.output_dir},
          {"method", std::string(QuantMethodName(config.quant.method))},
          {"allocation", summary.allocation},
          {"target_bits", summary.target_bits},
          {"achieved_bits", summary.achieved_bits},
          {"proxy_loss", summary.total_proxy_loss},
          {"quantized_elements", summary.quantized_elements},
          {"seconds", absl::ToDoubleSeconds(summary.wall_time)},
          {"formats", std::move(formats)},
          {"targets", std::move(targets)}};
}

}  // namespace

absl::Status RunQuantize(const JobConfig& config, const worker::EngineOptions& engine_options,
                         const OutputOptions& output) {
  BAQ_RETURN_IF_ERROR(config.Validate());
  // Ctrl-C cancels the job cleanly (nothing published, temp dirs removed).
  // First, before LibTorch starts threads: they inherit the signal mask.
  absl::Mutex runner_mu;
  coordinator::JobRunner* running = nullptr;  // Guarded by runner_mu.
  CancelOnSignal on_signal([&] {
    absl::MutexLock lock(&runner_mu);
    if (running != nullptr) running->Cancel();
  });
  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<BlockEngine> engine,
                       worker::MakeTorchBlockEngine(engine_options));
  ProgressBar bar(stderr, output.progress);
  coordinator::JobRunner runner(config, {engine.get()},
                                [&bar](const coordinator::JobProgress& p) { bar.Update(p); });
  {
    absl::MutexLock lock(&runner_mu);
    running = &runner;
  }
  absl::StatusOr<coordinator::JobSummary> summary = runner.Run();
  {
    absl::MutexLock lock(&runner_mu);
    running = nullptr;
  }
  bar.Finish();
  if (!summary.ok()) {
    // Bad input, a failed gate or Ctrl-C keep their own exit codes; any
    // other failure of the run is the job's.
    if (ExitCodeFor(summary.status()) == kExitInternal) {
      return WithExitCode(summary.status(), kExitJobFailed);
    }
    return summary.status();
  }
  if (output.json) {
    PrintJson(stdout, SummaryJson(config, *summary));
    return absl::OkStatus();
  }
  std::printf("output:          %s\n", summary->output_dir.c_str());
  std::printf("method:          %s (%s allocation)\n",
              std::string(QuantMethodName(config.quant.method)).c_str(),
              summary->allocation.c_str());
  std::printf("bits:            %.4f achieved, %.4f target\n", summary->achieved_bits,
              summary->target_bits);
  std::printf("proxy loss:      %.6g (sum over layers of tr((W-Q) H (W-Q)^T))\n",
              summary->total_proxy_loss);
  if (summary->targets.size() > 1) {
    for (const coordinator::TargetSummary& t : summary->targets) {
      std::printf("  %5.4g bits:     %.4f achieved, proxy loss %.6g -> %s\n", t.target_bits,
                  t.achieved_bits, t.total_proxy_loss, t.output_dir.c_str());
    }
  }
  std::printf("wall time:       %.1f s\n", absl::ToDoubleSeconds(summary->wall_time));
  return absl::OkStatus();
}

}  // namespace baq::cli
