// tools/cli/job_json.h
//
// The JSON form of a coordinator's job record (baq.v1.Job) for the remote
// commands' --output json: status and cancel print {"ok": true, "job": ...},
// list {"ok": true, "jobs": [...]}. Fields (docs/cli.md): id, state,
// progress (cli_output.h ProgressJson), error_code, error, model_dir,
// output_dir, target_bits, measurement_dir, tenant, priority,
// queue_position, memory_estimate_bytes, summary (once succeeded) and the
// create/start/end times in Unix milliseconds (0: not yet). Stateless.
#ifndef BAQ_TOOLS_CLI_JOB_JSON_H_
#define BAQ_TOOLS_CLI_JOB_JSON_H_

#include <string>

#include "baq/v1/job.pb.h"
#include "nlohmann/json.hpp"

namespace baq::cli {

// "queued", "running", "succeeded", "failed", "cancelled", "failed_gate",
// "unknown".
std::string JobStateName(v1::JobState state);

bool IsTerminal(v1::JobState state);

nlohmann::json JobJson(const v1::Job& job);

// A Watch event as a JSON line: ProgressJson plus "job_id" and "state".
nlohmann::json JobEventJson(const v1::JobEvent& event);

}  // namespace baq::cli

#endif  // BAQ_TOOLS_CLI_JOB_JSON_H_
