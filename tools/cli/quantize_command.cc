// `baq quantize`: embedded local mode — the coordinator's JobRunner driving
// one in-process TorchBlockEngine, the same code paths as the service.
#include <cstdio>
#include <map>

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

nlohmann::json ModulesJson(const std::vector<coordinator::ModuleWidth>& modules) {
  nlohmann::json out = nlohmann::json::array();
  for (const coordinator::ModuleWidth& m : modules) {
    out.push_back({{"name", m.name}, {"layers", m.layers}, {"bits", m.bits}});
  }
  return out;
}

nlohmann::json TargetJson(const coordinator::TargetSummary& t) {
  nlohmann::json j = {{"target_bits", t.target_bits},
                      {"achieved_bits", t.achieved_bits},
                      {"proxy_loss", t.total_proxy_loss},
                      {"quantized_elements", t.quantized_elements},
                      {"output_dir", t.output_dir},
                      {"published", t.published}};
  if (!t.modules.empty()) j["modules"] = ModulesJson(t.modules);
  return j;
}

// Allocation module: how many modules took each width, then one line per
// module (its first layer, the count of layers tied to it, its width).
void PrintModules(const coordinator::TargetSummary& t) {
  if (t.modules.empty()) return;
  std::map<int32_t, int> count;
  for (const coordinator::ModuleWidth& m : t.modules) ++count[m.bits];
  std::printf("module widths:  ");
  for (const auto& [bits, n] : count) std::printf(" %d bits x %d", bits, n);
  std::printf(" (of %zu modules, target %.4g)\n", t.modules.size(), t.target_bits);
  for (const coordinator::ModuleWidth& m : t.modules) {
    std::printf("  %d  %s%s\n", m.bits, m.name.c_str(),
                m.layers.size() > 1 ? absl::StrFormat(" (+%zu tied)", m.layers.size() - 1).c_str()
                                    : "");
  }
}

nlohmann::json SummaryJson(const JobConfig& config, const coordinator::JobSummary& summary) {
  nlohmann::json formats = nlohmann::json::array();
  for (OutputFormat f : config.formats) formats.push_back(std::string(OutputFormatName(f)));
  nlohmann::json targets = nlohmann::json::array();
  for (const coordinator::TargetSummary& t : summary.targets) targets.push_back(TargetJson(t));
  nlohmann::json j = {{"ok", true},
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
  if (!summary.modules.empty()) j["modules"] = ModulesJson(summary.modules);
  return j;
}

}  // namespace

absl::Status RunQuantize(const JobConfig& config, const worker::EngineOptions& engine_options,
                         const OutputOptions& output, ModuleObjective module_objective) {
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
  coordinator::JobRunnerOptions runner_options;
  runner_options.module_objective = module_objective;
  coordinator::JobRunner runner(
      config, {engine.get()}, [&bar](const coordinator::JobProgress& p) { bar.Update(p); },
      runner_options);
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
  for (const coordinator::TargetSummary& t : summary->targets) PrintModules(t);
  std::printf("wall time:       %.1f s\n", absl::ToDoubleSeconds(summary->wall_time));
  return absl::OkStatus();
}

}  // namespace baq::cli
