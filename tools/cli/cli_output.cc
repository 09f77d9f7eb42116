#include "tools/cli/cli_output.h"

#include <string>

#include "coordinator/eval_gate.h"
#include "tools/cli/exit_codes.h"

namespace baq::cli {

nlohmann::json ErrorJson(const absl::Status& status) {
  nlohmann::json error = {{"code", absl::StatusCodeToString(status.code())},
                          {"message", std::string(status.message())},
                          {"exit_code", ExitCodeFor(status)}};
  nlohmann::json j = {{"ok", false}, {"error", std::move(error)}};
  if (auto gate = coordinator::EvalGateResultOf(status); gate.has_value()) {
    j["eval_gate"] = coordinator::EvalGateJson(*gate);
  }
  return j;
}

nlohmann::json ProgressJson(const coordinator::JobProgress& p) {
  nlohmann::json j = {{"event", "progress"},
                      {"stage", std::string(coordinator::JobStageName(p.stage))},
                      {"block", p.block},
                      {"blocks_done", p.blocks_done},
                      {"num_blocks", p.num_blocks},
                      {"percent", p.percent},
                      {"achieved_bits", p.achieved_bits},
                      {"elapsed_seconds", absl::ToDoubleSeconds(p.elapsed)},
                      {"eta_seconds", nullptr},
                      {"message", p.message}};
  if (p.eta != absl::InfiniteDuration()) j["eta_seconds"] = absl::ToDoubleSeconds(p.eta);
  return j;
}

void PrintJson(std::FILE* out, const nlohmann::json& j) {
  // Invalid UTF-8 in a message (a file name) is replaced, never thrown.
  const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::fprintf(out, "%s\n", line.c_str());
  std::fflush(out);
}

}  // namespace baq::cli
