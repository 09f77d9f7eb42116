// tools/cli/local_commands.h
//
// The subcommands that run in this process (embedded local mode): quantize
// (the coordinator's JobRunner driving an in-process TorchBlockEngine — the
// same code the service runs), eval (perplexity of a checkpoint) and inspect
// (the bit allocation of a baq output). Each returns the exit code's status
// (exit_codes.h) and prints its results to stdout — text, or one JSON object
// with output.json (docs/cli.md) — and progress to stderr when
// output.progress.
#ifndef BAQ_TOOLS_CLI_LOCAL_COMMANDS_H_
#define BAQ_TOOLS_CLI_LOCAL_COMMANDS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/job_config.h"
#include "common/module_allocation.h"
#include "tools/cli/cli_output.h"
#include "worker/torch_block_engine.h"

namespace baq::cli {

// `module_objective`: what --allocation module minimizes (a local-mode knob,
// not part of the job spec; common/module_allocation.h).
absl::Status RunQuantize(const JobConfig& config, const worker::EngineOptions& engine,
                         const OutputOptions& output = {},
                         ModuleObjective module_objective = ModuleObjective::kNormalized);

struct EvalOptions {
  std::string model_dir;
  std::string text_file;
  int64_t seqlen = 2048;
  // 0: all windows.
  int64_t max_windows = 0;
  worker::EngineOptions engine;
};
absl::Status RunEval(const EvalOptions& options, const OutputOptions& output = {});

// Prints the per-layer bit histogram of a baq output dir (quant_report.json
// and, for packed outputs, the stored level counts).
absl::Status RunInspect(const std::string& output_dir, const OutputOptions& output = {});

}  // namespace baq::cli

#endif  // BAQ_TOOLS_CLI_LOCAL_COMMANDS_H_
