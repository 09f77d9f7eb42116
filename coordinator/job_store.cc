#include "coordinator/job_store.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace baq::coordinator {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

int64_t ToMillis(absl::Time t) { return absl::ToUnixMillis(t); }
absl::Time FromMillis(int64_t ms) { return absl::FromUnixMillis(ms); }

json TargetsToJson(const std::vector<TargetSummary>& targets) {
  json out = json::array();
  for (const TargetSummary& t : targets) {
    out.push_back({{"output_dir", t.output_dir},
                   {"target_bits", t.target_bits},
                   {"achieved_bits", t.achieved_bits},
                   {"allocation", t.allocation},
                   {"total_proxy_loss", t.total_proxy_loss},
                   {"quantized_elements", t.quantized_elements},
                   {"eval_gate_ppl", t.eval_gate_ppl},
                   {"eval_gate_base_ppl", t.eval_gate_base_ppl},
                   {"published", t.published}});
  }
  return out;
}

std::vector<TargetSummary> TargetsFromJson(const json& j) {
  std::vector<TargetSummary> targets;
  if (!j.is_array()) return targets;
  for (const json& t : j) {
    TargetSummary s;
    s.output_dir = t.value("output_dir", "");
    s.target_bits = t.value("target_bits", 0.0);
    s.achieved_bits = t.value("achieved_bits", 0.0);
    s.allocation = t.value("allocation", "");
    s.total_proxy_loss = t.value("total_proxy_loss", 0.0);
    s.quantized_elements = t.value("quantized_elements", int64_t{0});
    s.eval_gate_ppl = t.value("eval_gate_ppl", 0.0);
    s.eval_gate_base_ppl = t.value("eval_gate_base_ppl", 0.0);
    s.published = t.value("published", false);
    targets.push_back(std::move(s));
  }
  return targets;
}

json SummaryToJson(const JobSummary& s) {
  return {{"output_dir", s.output_dir},
          {"target_bits", s.target_bits},
          {"achieved_bits", s.achieved_bits},
          {"allocation", s.allocation},
          {"total_proxy_loss", s.total_proxy_loss},
          {"quantized_elements", s.quantized_elements},
          {"wall_seconds", absl::ToDoubleSeconds(s.wall_time)},
          {"targets", TargetsToJson(s.targets)}};
}

JobSummary SummaryFromJson(const json& j) {
  JobSummary s;
  s.output_dir = j.value("output_dir", "");
  s.target_bits = j.value("target_bits", 0.0);
  s.achieved_bits = j.value("achieved_bits", 0.0);
  s.allocation = j.value("allocation", "");
  s.total_proxy_loss = j.value("total_proxy_loss", 0.0);
  s.quantized_elements = j.value("quantized_elements", int64_t{0});
  s.wall_time = absl::Seconds(j.value("wall_seconds", 0.0));
  if (j.contains("targets")) s.targets = TargetsFromJson(j.at("targets"));
  return s;
}

json ProgressToJson(const JobProgress& p) {
  return {{"stage", static_cast<int>(p.stage)},
          {"block", p.block},
          {"blocks_done", p.blocks_done},
          {"num_blocks", p.num_blocks},
          {"percent", p.percent},
          {"elapsed_seconds", absl::ToDoubleSeconds(p.elapsed)},
          {"achieved_bits", p.achieved_bits},
          {"message", p.message}};
}

JobProgress ProgressFromJson(const json& j) {
  JobProgress p;
  const int stage = j.value("stage", 0);
  p.stage = stage >= 0 && stage <= static_cast<int>(JobStage::kDone) ? static_cast<JobStage>(stage)
                                                                     : JobStage::kQueued;
  p.block = j.value("block", int64_t{-1});
  p.blocks_done = j.value("blocks_done", int64_t{0});
  p.num_blocks = j.value("num_blocks", int64_t{0});
  p.percent = j.value("percent", 0.0);
  p.elapsed = absl::Seconds(j.value("elapsed_seconds", 0.0));
  p.eta = absl::InfiniteDuration();  // Meaningless after a reload.
  p.achieved_bits = j.value("achieved_bits", 0.0);
  p.message = j.value("message", "");
  return p;
}

}  // namespace

json JobConfigToJson(const JobConfig& c) {
  json formats = json::array();
  for (OutputFormat f : c.formats) formats.push_back(std::string(OutputFormatName(f)));
  const QuantizationConfig& q = c.quant;
  json j = {{"model_dir", c.model_dir},
          {"output_dir", c.output_dir},
          {"formats", formats},
          {"calibration",
           {{"files", c.calibration.files},
            {"num_samples", c.calibration.num_samples},
            {"seqlen", c.calibration.seqlen},
            {"seed", c.calibration.seed}}},
          {"quant",
           {{"method", std::string(QuantMethodName(q.method))},
            {"target_bits", q.target_bits},
            {"symmetric", q.symmetric},
            {"group_size", q.group_size},
            {"act_order", q.act_order},
            {"static_groups", q.static_groups},
            {"percdamp", q.percdamp},
            {"block_size", q.block_size},
            {"allocation_scope", std::string(AllocationScopeName(q.allocation_scope))},
            {"theta", q.theta},
            {"max_levels", q.max_levels}}},
          {"mode", std::string(ExecutionModeName(c.mode))},
          {"eval_file", c.eval_file}};
  // Only when set, so the checkpoint fingerprint of gate-less jobs is unchanged.
  if (c.eval_gate.enabled()) {
    j["eval_gate"] = {{"text_file", c.eval_gate.text_file},
                      {"seqlen", c.eval_gate.seqlen},
                      {"max_ppl", c.eval_gate.max_ppl},
                      {"max_ppl_ratio", c.eval_gate.max_ppl_ratio}};
  }
  // Only for module allocation, so other jobs' fingerprints are unchanged.
  if (q.module_allocation()) j["quant"]["candidate_bits"] = q.candidate_bits;
  // Only when set, so fingerprints of unsharded jobs are unchanged.
  if (c.calibration_shards != 1) j["calibration_shards"] = c.calibration_shards;
  if (!c.extra_target_bits.empty()) j["extra_target_bits"] = c.extra_target_bits;
  if (!c.measurement_dir.empty()) j["measurement_dir"] = c.measurement_dir;
  // Only when not the default, so existing fingerprints are unchanged.
  if (c.max_shard_bytes != JobConfig().max_shard_bytes) j["max_shard_bytes"] = c.max_shard_bytes;
  return j;
}

absl::StatusOr<JobConfig> JobConfigFromJson(const json& j) {
  try {
    JobConfig c;
    const JobConfig d;
    c.model_dir = j.at("model_dir").get<std::string>();
    c.output_dir = j.at("output_dir").get<std::string>();
    c.formats.clear();
    for (const json& f : j.at("formats")) {
      auto format = ParseOutputFormat(f.get<std::string>());
      if (!format.ok()) return format.status();
      c.formats.push_back(*format);
    }
    const json& cal = j.at("calibration");
    c.calibration.files = cal.at("files").get<std::vector<std::string>>();
    c.calibration.num_samples = cal.value("num_samples", d.calibration.num_samples);
    c.calibration.seqlen = cal.value("seqlen", d.calibration.seqlen);
    c.calibration.seed = cal.value("seed", d.calibration.seed);
    const json& q = j.at("quant");
    auto method = ParseQuantMethod(q.value("method", "baq"));
    if (!method.ok()) return method.status();
    c.quant.method = *method;
    c.quant.target_bits = q.value("target_bits", d.quant.target_bits);
    c.quant.symmetric = q.value("symmetric", d.quant.symmetric);
    c.quant.group_size = q.value("group_size", d.quant.group_size);
    c.quant.act_order = q.value("act_order", d.quant.act_order);
    c.quant.static_groups = q.value("static_groups", d.quant.static_groups);
    c.quant.percdamp = q.value("percdamp", d.quant.percdamp);
    c.quant.block_size = q.value("block_size", d.quant.block_size);
    auto scope = ParseAllocationScope(q.value("allocation_scope", "global"));
    if (!scope.ok()) return scope.status();
    c.quant.allocation_scope = *scope;
    c.quant.theta = q.value("theta", d.quant.theta);
    c.quant.max_levels = q.value("max_levels", d.quant.max_levels);
    c.quant.candidate_bits = q.value("candidate_bits", d.quant.candidate_bits);
    auto mode = ParseExecutionMode(j.value("mode", "sequential"));
    if (!mode.ok()) return mode.status();
    c.mode = *mode;
    c.eval_file = j.value("eval_file", "");
    c.calibration_shards = j.value("calibration_shards", d.calibration_shards);
    c.extra_target_bits = j.value("extra_target_bits", std::vector<double>{});
    c.measurement_dir = j.value("measurement_dir", "");
    c.max_shard_bytes = j.value("max_shard_bytes", d.max_shard_bytes);
    if (j.contains("eval_gate")) {
      const json& g = j.at("eval_gate");
      c.eval_gate.text_file = g.at("text_file").get<std::string>();
      c.eval_gate.seqlen = g.value("seqlen", d.eval_gate.seqlen);
      c.eval_gate.max_ppl = g.value("max_ppl", 0.0);
      c.eval_gate.max_ppl_ratio = g.value("max_ppl_ratio", 0.0);
    }
    return c;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("job config json: ", e.what()));
  }
}

json JobRecordToJson(const JobRecord& r) {
  json j = {{"id", r.id},
            {"request_id", r.request_id},
            {"config", JobConfigToJson(r.config)},
            {"tenant", r.tenant},
            {"priority", r.priority},
            {"memory_estimate_bytes", r.memory_estimate_bytes},
            {"state", std::string(JobStateName(r.state))},
            {"error_code", static_cast<int>(r.error.code())},
            {"error", std::string(r.error.message())},
            {"progress", ProgressToJson(r.progress)},
            {"create_time_unix_ms", ToMillis(r.create_time)},
            {"start_time_unix_ms", ToMillis(r.start_time)},
            {"end_time_unix_ms", ToMillis(r.end_time)}};
  if (r.summary.has_value()) j["summary"] = SummaryToJson(*r.summary);
  if (!r.labels.empty()) j["labels"] = r.labels;  // Only when set: older records stay as they were.
  return j;
}

absl::StatusOr<JobRecord> JobRecordFromJson(const json& j) {
  try {
    JobRecord r;
    r.id = j.at("id").get<std::string>();
    r.request_id = j.value("request_id", "");
    auto config = JobConfigFromJson(j.at("config"));
    if (!config.ok()) return config.status();
    r.config = *std::move(config);
    r.tenant = j.value("tenant", "");
    r.priority = j.value("priority", 0);
    r.memory_estimate_bytes = j.value("memory_estimate_bytes", int64_t{0});
    auto state = ParseJobState(j.at("state").get<std::string>());
    if (!state.ok()) return state.status();
    r.state = *state;
    const int code = j.value("error_code", 0);
    if (code != 0)
      r.error = absl::Status(static_cast<absl::StatusCode>(code), j.value("error", ""));
    if (j.contains("progress")) r.progress = ProgressFromJson(j.at("progress"));
    r.create_time = FromMillis(j.value("create_time_unix_ms", int64_t{0}));
    r.start_time = FromMillis(j.value("start_time_unix_ms", int64_t{0}));
    r.end_time = FromMillis(j.value("end_time_unix_ms", int64_t{0}));
    if (j.contains("summary")) r.summary = SummaryFromJson(j.at("summary"));
    if (j.contains("labels")) r.labels = j.at("labels").get<std::map<std::string, std::string>>();
    return r;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("job record json: ", e.what()));
  }
}

absl::Status JobStore::Init() const {
  if (!enabled()) return absl::OkStatus();
  std::error_code ec;
  fs::create_directories(JobsDir(), ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", JobsDir(), ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::string> JobStore::Remove(const std::string& id) const {
  if (!enabled()) return std::string();
  const std::string path = absl::StrCat(JobsDir(), "/", id, ".json");
  std::error_code ec;
  const bool removed = fs::remove(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot remove ", path, ": ", ec.message()));
  return removed ? path : std::string();
}

absl::Status JobStore::Save(const JobRecord& record) const {
  if (!enabled()) return absl::OkStatus();
  const std::string path = absl::StrCat(JobsDir(), "/", record.id, ".json");
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << JobRecordToJson(record).dump(2) << "\n";
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<JobRecord>> JobStore::LoadAll() const {
  std::vector<JobRecord> records;
  if (!enabled()) return records;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(JobsDir(), ec)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    json j = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    absl::StatusOr<JobRecord> record =
        j.is_discarded() ? absl::InvalidArgumentError("not JSON") : JobRecordFromJson(j);
    if (!record.ok()) {
      std::cerr << "baq-coordinator: skipping " << entry.path() << ": " << record.status() << "\n";
      continue;
    }
    records.push_back(*std::move(record));
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", JobsDir(), ": ", ec.message()));
  std::sort(records.begin(), records.end(), [](const JobRecord& a, const JobRecord& b) {
    return a.create_time != b.create_time ? a.create_time < b.create_time : a.id < b.id;
  });
  return records;
}

}  // namespace baq::coordinator
