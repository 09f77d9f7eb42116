// tools/cli/cli_output.h
//
// How a `baq` command reports: text for people (the default) or, with
// `--output json`, exactly one JSON object on stdout — {"ok": true, ...} on
// success, {"ok": false, "error": {...}} on failure — or JSON lines for
// watch and submit --wait (one {"event": "progress", ...} per update, then
// the final object). Progress bars go to stderr only, when `progress` is set
// (main sets it when stderr is a terminal, or from --progress). The fields
// are documented in docs/cli.md. Torch-free free functions.
//
// Example:
//   if (output.json) PrintJson(stdout, {{"ok", true}, {"perplexity", ppl}});
//   else std::printf("perplexity: %.4f\n", ppl);
#ifndef BAQ_TOOLS_CLI_CLI_OUTPUT_H_
#define BAQ_TOOLS_CLI_CLI_OUTPUT_H_

#include <cstdio>

#include "absl/status/status.h"
#include "coordinator/job_progress.h"
#include "nlohmann/json.hpp"

namespace baq::cli {

struct OutputOptions {
  // --output json (or --json).
  bool json = false;
  // Draw progress on stderr.
  bool progress = false;
};

// {"ok": false, "error": {"code": "INVALID_ARGUMENT", "message": ...,
// "exit_code": 3}}, plus "eval_gate" (the gate's numbers) for a failed gate.
// REQUIRES: !status.ok().
nlohmann::json ErrorJson(const absl::Status& status);

// {"event": "progress", "stage", "block", "blocks_done", "num_blocks",
// "percent", "achieved_bits", "elapsed_seconds", "eta_seconds" (null when
// unknown), "message"}.
nlohmann::json ProgressJson(const coordinator::JobProgress& p);

// Writes `j` as one line and flushes (a pipeline reads it as it comes).
void PrintJson(std::FILE* out, const nlohmann::json& j);

}  // namespace baq::cli

#endif  // BAQ_TOOLS_CLI_CLI_OUTPUT_H_
