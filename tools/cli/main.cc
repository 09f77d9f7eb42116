// The `baq` command line: flags and dispatch only; the commands live in
// baq_cli (local_commands.h, remote_commands.h).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/job_config.h"
#include "common/status_macros.h"
#include "common/trace_recorder.h"
#include "tools/cli/cli_output.h"
#include "tools/cli/exit_codes.h"
#include "tools/cli/local_commands.h"
#include "tools/cli/remote_commands.h"
#include "tools/cli/tokenize_command.h"
#include "worker/torch/trace_cuda_sync.h"

ABSL_FLAG(std::string, model, "", "Model dir (HF layout: config.json, *.safetensors, tokenizer.json)");
ABSL_FLAG(std::string, calib, "", "Calibration text files, comma-separated (encoded separately, concatenated)");
ABSL_FLAG(std::string, out, "", "Output dir; published atomically, must not exist");
ABSL_FLAG(std::string, bits, "3", "Target average bits per weight, in [1, 8] (fractional needs --method baq or --allocation module); several comma-separated targets (2.5,3,4) share one measurement in --mode parallel and write <out>/bits-<t> each");
ABSL_FLAG(std::string, measurement, "", "--mode parallel: keep the measurement (every layer's Hessian) in this dir, or reuse the one there if it is of the same model and calibration; submit: a plain name is kept in the coordinator's <data-dir>/measurements/");
ABSL_FLAG(std::string, method, "baq", "baq | gptq | rtn");
ABSL_FLAG(std::string, format, "fake-quant",
          "Output formats, comma-separated: fake-quant, packed, gptq, compressed-tensors "
          "(docs/output-formats.md)");
ABSL_FLAG(int64_t, max_shard_size, 5'000'000'000,
          "Bytes of tensor data per safetensors file of an output checkpoint; larger outputs are "
          "sharded with model.safetensors.index.json");
ABSL_FLAG(std::string, mode, "sequential", "sequential (exact GPTQ protocol) | parallel");
ABSL_FLAG(std::string, allocation, "global",
          "BAQ bit allocation: global (per-layer normalized, exact model average) | global-raw | sublayer (paper) | module (one GPTQ width per module from --candidate_bits, fused layers tied, chosen by measured proxy loss; servable)");
ABSL_FLAG(std::string, candidate_bits, "2,3,4,8",
          "--allocation module: the widths a module may take, comma-separated, increasing");
ABSL_FLAG(std::string, module_objective, "normalized",
          "quantize --allocation module: what the width choice minimizes: normalized (each "
          "layer's proxy loss relative to its own loss at the target, weighted by its size) | raw "
          "(summed proxy loss; for comparison, local mode only)");
ABSL_FLAG(double, theta, 1.95, "BAQ allocation exponent (2 = continuous equal-loss form)");
ABSL_FLAG(int64_t, nsamples, 128, "Calibration windows");
ABSL_FLAG(int64_t, seqlen, 2048, "Tokens per calibration / evaluation window");
ABSL_FLAG(uint64_t, seed, 0, "Calibration sampling seed (Python random.seed compatible)");
ABSL_FLAG(int32_t, group_size, -1, "GPTQ/RTN group size (-1: one grid per row)");
ABSL_FLAG(bool, act_order, false, "Quantize columns by decreasing Hessian diagonal");
ABSL_FLAG(bool, static_groups, false, "Precompute group grids (with --act_order)");
ABSL_FLAG(bool, sym, false, "Symmetric grids (GPTQ/RTN)");
ABSL_FLAG(double, percdamp, 0.01, "Hessian damping, fraction of mean diagonal");
ABSL_FLAG(std::string, device, "cpu",
          "Device for local mode: cpu | cuda | cuda:N | several GPUs as cuda:0,cuda:1 (one engine; "
          "calibration split, Hessians all-reduced over NCCL)");
ABSL_FLAG(int32_t, hessian_partials, 0,
          "Hessian partial sums (0: one per device); output bits depend on it, not on the device "
          "count: --device cuda:0 --hessian_partials 2 equals --device cuda:0,cuda:1");
ABSL_FLAG(int32_t, calibration_shards, 0,
          "quantize/submit (sequential mode): split the calibration windows into this many "
          "shards whose fp64 Hessian partial sums are computed on different workers and merged "
          "in shard order; the output depends on it, not on the worker count. 0: one shard per "
          "worker the job starts on (1 in local mode)");
ABSL_FLAG(bool, quantize_projections, false,
          "Also quantize OPT's project_in/project_out (opt-350m); not implemented yet: rejected");
ABSL_FLAG(std::string, forward_dtype, "auto",
          "quantize/submit: dtype of the calibration forward: auto (the checkpoint's dtype on "
          "CUDA, float32 on CPU) | float32 | bfloat16 | float16");
ABSL_FLAG(int32_t, threads, 0, "CPU threads for LibTorch (0: default)");
ABSL_FLAG(int64_t, activation_memory_limit, 0,
          "quantize: calibration activations of a block boundary larger than this many bytes go "
          "to a spill file instead of memory (0: no limit)");
ABSL_FLAG(std::string, activation_spill_dir, "",
          "quantize: directory of spilled activations (default: the system temp dir)");
ABSL_FLAG(std::string, eval_gate_data, "",
          "quantize/submit: evaluation gate text; publish only if the fake-quant result's "
          "perplexity passes --eval_gate_max_ppl or --eval_gate_max_ratio");
ABSL_FLAG(double, eval_gate_max_ppl, 0, "quantize/submit: gate limit, maximum perplexity");
ABSL_FLAG(double, eval_gate_max_ratio, 0,
          "quantize/submit: gate limit, maximum ratio to the unquantized model's perplexity");
ABSL_FLAG(int64_t, eval_gate_seqlen, 2048, "quantize/submit: tokens per gate evaluation window");
ABSL_FLAG(std::string, text, "", "eval: text file to compute perplexity on; tokenize: text file to encode");
ABSL_FLAG(std::string, tokenizer, "", "tokenize: a tokenizer.json file (instead of --model DIR)");
ABSL_FLAG(int64_t, max_windows, 0, "eval: stop after this many windows (0: all)");
ABSL_FLAG(std::string, coordinator, "127.0.0.1:7000", "submit/status/watch/cancel/list: coordinator HOST:PORT");
ABSL_FLAG(bool, wait, false, "submit: watch the job until it ends; exit code tells success");
ABSL_FLAG(std::string, request_id, "", "submit: idempotency key (retries with the same key return the same job)");
ABSL_FLAG(int32_t, priority, 0, "submit: scheduling priority, higher runs first (docs/operations.md)");
ABSL_FLAG(std::string, tenant, "", "submit: tenant for fair share when the coordinator has no auth (with auth, the token's tenant wins); list: only this tenant's jobs");
ABSL_FLAG(std::vector<std::string>, label, {},
          "submit: labels of the job, KEY=VALUE, comma-separated; list: only jobs with all of them");
ABSL_FLAG(std::vector<std::string>, state, {},
          "list: only jobs in these states, comma-separated (queued, running, succeeded, failed, "
          "cancelled, failed_gate)");
ABSL_FLAG(bool, delete_outputs, false, "delete: also remove the outputs the job published");
ABSL_FLAG(absl::Duration, watch_deadline, absl::Hours(72),
          "watch, submit --wait: give up (exit 7) after this long, reconnects included; the job "
          "goes on");
ABSL_FLAG(absl::Duration, reconnect_deadline, absl::Hours(1),
          "watch, submit --wait: keep reconnecting (exponential backoff, 0.5 s to 30 s) this long "
          "after the last event while the coordinator is unreachable or restarting");
ABSL_FLAG(int32_t, rpc_timeout_s, 30, "Deadline of each RPC to the coordinator, seconds");
ABSL_FLAG(std::string, auth_token_file, "", "Service commands: file holding the coordinator's bearer token (else $BAQ_AUTH_TOKEN)");
ABSL_FLAG(bool, tls, false, "Service commands: TLS to the coordinator, verified against the system roots");
ABSL_FLAG(std::string, tls_ca, "", "Service commands: CA bundle (PEM) that signed the coordinator's certificate; implies TLS");
ABSL_FLAG(std::string, tls_client_cert, "", "Service commands: client certificate (PEM) for mutual TLS");
ABSL_FLAG(std::string, tls_client_key, "", "Service commands: key (PEM) of --tls_client_cert");
ABSL_FLAG(std::string, output, "text",
          "text | json: one JSON object on stdout, on success and on failure (JSON lines for "
          "watch and submit --wait); fields in docs/cli.md");
ABSL_FLAG(bool, json, false, "Same as --output json");
ABSL_FLAG(std::string, trace_file, "",
          "quantize: write a timeline of the run (Chrome trace JSON: per-block engine stages) to "
          "this file at the end; open it in ui.perfetto.dev (docs/performance.md)");
ABSL_FLAG(bool, trace_cuda_sync, false,
          "quantize --trace_file on CUDA: end every span with a device synchronize, so spans "
          "show device time per stage (slows the run; docs/performance.md)");
ABSL_FLAG(bool, progress, false,
          "Progress on stderr (default: only when stderr is a terminal); --progress=false: never");

#ifndef BAQ_VERSION
#define BAQ_VERSION "unknown"
#endif
#ifndef BAQ_GIT_REVISION
#define BAQ_GIT_REVISION "unknown"
#endif

namespace {

constexpr char kUsage[] = R"(baq: BAQ + GPTQ quantization of LLMs.

Usage: baq <command> [flags]

Commands (local, embedded mode):
  quantize   Quantize a model in this process.
  eval       Perplexity of a checkpoint over non-overlapping windows.
  inspect    Bit allocation per layer of a baq output.
  tokenize   The token ids baq uses for a text file, as JSON {"count": N, "ids": [...]}.

Commands (service, talking to a baq-coordinator):
  submit     Submit a job (same flags as quantize; paths as the workers see them).
  status JOB | watch JOB | cancel JOB | delete JOB | list

Examples:
  baq quantize --model examples/opt-fixture --calib examples/calibration.txt \
      --bits 3 --nsamples 32 --seqlen 512 --out /tmp/opt-baq3
  baq quantize --model ~/llama-7b --calib c4.txt --bits 2.5 --format packed,gptq --out /data/llama-baq
  baq quantize --model ~/opt-125m --calib wiki.txt --method gptq --bits 4 --group_size 128 --act_order --out /tmp/g
  baq quantize --model ~/llama-7b --calib c4.txt --mode parallel --bits 2.5,3,4 \
      --measurement /data/llama-c4-meas --out /data/llama-baq   # bits-2.5/ bits-3/ bits-4/
  baq eval --model /tmp/opt-baq3 --text wikitext-2/test.txt
  baq inspect /tmp/opt-baq3
  baq tokenize --model ~/llama-7b --text calib.txt          # ids for calibration/eval
  baq tokenize --tokenizer tokenizer.json --text sample.txt # a tokenizer.json alone
  baq submit --coordinator 127.0.0.1:7000 --model /models/opt --calib /data/c4.txt --bits 3 --out /out/opt3 --wait
  baq watch --coordinator 127.0.0.1:7000 job-1a2b
  baq eval --model /tmp/opt-baq3 --text test.txt --output json   # {"ok": true, "perplexity": ...}

Every command takes --output json (or --json) and exits 0 ok, 1 internal error, 2 usage error,
3 input refused, 4 job failed, 5 eval gate failed, 6 cancelled, 7 coordinator unreachable or
deadline exceeded (docs/cli.md). `baq --version` prints the version and git revision.

Run `baq --helpfull` for every flag.)";

bool JsonOutput() { return absl::GetFlag(FLAGS_json) || absl::GetFlag(FLAGS_output) == "json"; }

// --output json: one JSON object on stdout. The text goes to stderr either
// way, for the people reading a pipeline's log.
int Finish(const absl::Status& status) {
  if (status.ok()) return baq::cli::kExitOk;
  // Code and message, without the payloads (the exit code is the exit code).
  std::fprintf(stderr, "baq: error: %s: %s\n",
               absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  if (JsonOutput()) baq::cli::PrintJson(stdout, baq::cli::ErrorJson(status));
  return baq::cli::ExitCodeFor(status);
}

// "baq 0.1.0 (1a2b3c4d5e6f)", or {"version", "git_revision"} as JSON.
std::string VersionString() {
  if (JsonOutput()) {
    nlohmann::json j = {{"ok", true}, {"version", BAQ_VERSION}, {"git_revision", BAQ_GIT_REVISION}};
    return j.dump() + "\n";
  }
  return absl::StrCat("baq ", BAQ_VERSION, " (", BAQ_GIT_REVISION, ")\n");
}

template <typename T>
absl::Status FlagError(const absl::StatusOr<T>& s) {
  return s.ok() ? absl::OkStatus() : baq::cli::UsageError(s.status().message());
}

absl::Status BuildJobConfig(baq::JobConfig& c) {
  c.model_dir = absl::GetFlag(FLAGS_model);
  c.output_dir = absl::GetFlag(FLAGS_out);
  c.calibration.files = absl::StrSplit(absl::GetFlag(FLAGS_calib), ',', absl::SkipEmpty());
  c.calibration.num_samples = absl::GetFlag(FLAGS_nsamples);
  c.calibration.seqlen = absl::GetFlag(FLAGS_seqlen);
  c.calibration.seed = absl::GetFlag(FLAGS_seed);
  c.formats.clear();
  for (absl::string_view f : absl::StrSplit(absl::GetFlag(FLAGS_format), ',', absl::SkipEmpty())) {
    auto parsed = baq::ParseOutputFormat(f);
    BAQ_RETURN_IF_ERROR(FlagError(parsed));
    c.formats.push_back(*parsed);
  }
  auto method = baq::ParseQuantMethod(absl::GetFlag(FLAGS_method));
  auto mode = baq::ParseExecutionMode(absl::GetFlag(FLAGS_mode));
  auto scope = baq::ParseAllocationScope(absl::GetFlag(FLAGS_allocation));
  BAQ_RETURN_IF_ERROR(FlagError(method));
  BAQ_RETURN_IF_ERROR(FlagError(mode));
  BAQ_RETURN_IF_ERROR(FlagError(scope));
  auto forward_dtype = baq::ParseForwardDtype(absl::GetFlag(FLAGS_forward_dtype));
  BAQ_RETURN_IF_ERROR(FlagError(forward_dtype));
  c.forward_dtype = *forward_dtype;
  c.mode = *mode;
  baq::QuantizationConfig& q = c.quant;
  q.method = *method;
  q.allocation_scope = *scope;
  std::vector<double> targets;
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_bits), ',', absl::SkipEmpty())) {
    double bits = 0;
    if (!absl::SimpleAtod(t, &bits)) {
      return baq::cli::UsageError(absl::StrCat("--bits: \"", t, "\" is not a number"));
    }
    targets.push_back(bits);
  }
  if (targets.empty()) return baq::cli::UsageError("--bits is empty");
  q.target_bits = targets.front();
  c.extra_target_bits.assign(targets.begin() + 1, targets.end());
  c.measurement_dir = absl::GetFlag(FLAGS_measurement);
  q.candidate_bits.clear();
  for (absl::string_view b :
       absl::StrSplit(absl::GetFlag(FLAGS_candidate_bits), ',', absl::SkipEmpty())) {
    int32_t bits = 0;
    if (!absl::SimpleAtoi(b, &bits)) {
      return baq::cli::UsageError(absl::StrCat("--candidate_bits: \"", b, "\" is not an integer"));
    }
    q.candidate_bits.push_back(bits);
  }
  q.theta = absl::GetFlag(FLAGS_theta);
  q.group_size = absl::GetFlag(FLAGS_group_size);
  q.act_order = absl::GetFlag(FLAGS_act_order);
  q.static_groups = absl::GetFlag(FLAGS_static_groups);
  q.symmetric = absl::GetFlag(FLAGS_sym);
  q.percdamp = absl::GetFlag(FLAGS_percdamp);
  c.eval_gate.text_file = absl::GetFlag(FLAGS_eval_gate_data);
  c.eval_gate.seqlen = absl::GetFlag(FLAGS_eval_gate_seqlen);
  c.eval_gate.max_ppl = absl::GetFlag(FLAGS_eval_gate_max_ppl);
  c.eval_gate.max_ppl_ratio = absl::GetFlag(FLAGS_eval_gate_max_ratio);
  c.calibration_shards = absl::GetFlag(FLAGS_calibration_shards);
  c.quantize_projections = absl::GetFlag(FLAGS_quantize_projections);
  c.max_shard_bytes = absl::GetFlag(FLAGS_max_shard_size);
  if (c.model_dir.empty() || c.output_dir.empty() || c.calibration.files.empty()) {
    return baq::cli::UsageError("needs --model, --calib and --out");
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view f) {
    return absl::StrContains(f, "tools/cli/main.cc");
  };
  // --version (absl's) prints this once the other flags are parsed, so it
  // sees --output json.
  usage_config.version_string = VersionString;
  absl::SetFlagsUsageConfig(usage_config);
  // Whether --progress was given either way (this Abseil does not say).
  bool progress_given = false;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view a = argv[i];
    if (a == "--") break;
    for (absl::string_view name : {"-progress", "--progress", "-noprogress", "--noprogress"}) {
      progress_given |= a == name || absl::StartsWith(a, absl::StrCat(name, "="));
    }
  }
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::fprintf(stderr, "%s\n", kUsage);
    return Finish(baq::cli::UsageError("no command (baq --help)"));
  }
  const std::string output_flag = absl::GetFlag(FLAGS_output);
  if (output_flag != "text" && output_flag != "json") {
    return Finish(baq::cli::UsageError(
        absl::StrCat("--output: \"", output_flag, "\" is neither text nor json")));
  }
  baq::cli::OutputOptions output;
  output.json = JsonOutput();
  // Progress only where someone watches, unless asked for either way.
  output.progress = progress_given ? absl::GetFlag(FLAGS_progress) : isatty(STDERR_FILENO) != 0;
  const std::string command = args[1];
  baq::worker::EngineOptions engine;
  engine.device = absl::GetFlag(FLAGS_device);
  engine.num_threads = absl::GetFlag(FLAGS_threads);
  engine.activation_spill.memory_limit_bytes = absl::GetFlag(FLAGS_activation_memory_limit);
  engine.activation_spill.spill_dir = absl::GetFlag(FLAGS_activation_spill_dir);
  engine.hessian_partials = absl::GetFlag(FLAGS_hessian_partials);
  if (command == "quantize") {
    baq::JobConfig config;
    if (absl::Status s = BuildJobConfig(config); !s.ok()) return Finish(s);
    const std::string trace_file = absl::GetFlag(FLAGS_trace_file);
    baq::trace::StartGlobalTrace(trace_file, "baq quantize");
    if (absl::GetFlag(FLAGS_trace_cuda_sync)) {
      if (absl::Status s = baq::worker::SyncCudaAtTraceSpanEnds(); !s.ok()) {
        return Finish(baq::cli::UsageError(s.message()));
      }
    }
    auto objective = baq::ParseModuleObjective(absl::GetFlag(FLAGS_module_objective));
    if (!objective.ok()) return Finish(baq::cli::UsageError(objective.status().message()));
    absl::Status status = baq::cli::RunQuantize(config, engine, output, *objective);
    // Written on failure too: a timeline of a failed run is still a timeline.
    if (absl::Status t = baq::trace::FinishGlobalTrace(trace_file); !t.ok()) {
      std::fprintf(stderr, "baq: warning: %s\n", std::string(t.message()).c_str());
    }
    return Finish(status);
  }
  if (command == "eval") {
    baq::cli::EvalOptions o;
    o.model_dir = absl::GetFlag(FLAGS_model);
    o.text_file = absl::GetFlag(FLAGS_text);
    o.seqlen = absl::GetFlag(FLAGS_seqlen);
    o.max_windows = absl::GetFlag(FLAGS_max_windows);
    o.engine = engine;
    if (o.model_dir.empty() || o.text_file.empty()) {
      return Finish(baq::cli::UsageError("baq eval needs --model and --text"));
    }
    return Finish(baq::cli::RunEval(o, output));
  }
  if (command == "tokenize") {
    baq::cli::TokenizeOptions o;
    o.model_dir = absl::GetFlag(FLAGS_model);
    o.tokenizer_file = absl::GetFlag(FLAGS_tokenizer);
    o.text_file = absl::GetFlag(FLAGS_text);
    absl::StatusOr<std::string> json = baq::cli::TokenizeToJson(o);
    if (!json.ok()) {
      // Usage errors exit 2 like the other commands' flag errors; a tokenizer
      // or text that was read and refused exits 3.
      if (baq::cli::IsTokenizeUsageError(json.status())) {
        return Finish(baq::cli::WithExitCode(json.status(), baq::cli::kExitUsage));
      }
      return Finish(json.status());
    }
    // Already one JSON object {"count", "ids"}, with or without --output json.
    std::fwrite(json->data(), 1, json->size(), stdout);
    return std::fflush(stdout) == 0 ? baq::cli::kExitOk : baq::cli::kExitInternal;
  }
  if (command == "inspect") {
    if (args.size() != 3) return Finish(baq::cli::UsageError("usage: baq inspect OUTPUT_DIR"));
    return Finish(baq::cli::RunInspect(args[2], output));
  }
  baq::cli::RemoteCommandOptions remote;
  remote.coordinator = absl::GetFlag(FLAGS_coordinator);
  remote.wait = absl::GetFlag(FLAGS_wait);
  remote.request_id = absl::GetFlag(FLAGS_request_id);
  remote.priority = absl::GetFlag(FLAGS_priority);
  remote.tenant = absl::GetFlag(FLAGS_tenant);
  remote.timeout = absl::Seconds(absl::GetFlag(FLAGS_rpc_timeout_s));
  remote.watch_deadline = absl::GetFlag(FLAGS_watch_deadline);
  for (const std::string& label : absl::GetFlag(FLAGS_label)) {
    const size_t eq = label.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Finish(baq::cli::UsageError(
          absl::StrCat("--label: \"", label, "\" is not KEY=VALUE")));
    }
    remote.labels[label.substr(0, eq)] = label.substr(eq + 1);
  }
  remote.list_states = absl::GetFlag(FLAGS_state);
  remote.list_tenant = absl::GetFlag(FLAGS_tenant);
  remote.delete_outputs = absl::GetFlag(FLAGS_delete_outputs);
  remote.reconnect_deadline = absl::GetFlag(FLAGS_reconnect_deadline);
  remote.tls.force = absl::GetFlag(FLAGS_tls);
  remote.tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  remote.tls.cert_file = absl::GetFlag(FLAGS_tls_client_cert);
  remote.tls.key_file = absl::GetFlag(FLAGS_tls_client_key);
  remote.output = output;
  if (const std::string path = absl::GetFlag(FLAGS_auth_token_file); !path.empty()) {
    std::ifstream in(path);
    std::string token;
    if (!(in >> token)) {  // The first word: a trailing newline or comment is fine.
      return Finish(baq::cli::UsageError(
          absl::StrCat("cannot read a token from --auth_token_file ", path)));
    }
    remote.auth_token = token;
  } else if (const char* env = std::getenv("BAQ_AUTH_TOKEN"); env != nullptr) {
    remote.auth_token = env;
  }
  if (command == "submit") {
    if (absl::Status s = BuildJobConfig(remote.config); !s.ok()) return Finish(s);
    if (absl::GetFlag(FLAGS_module_objective) != "normalized") {
      // Not part of the job spec: the coordinator always normalizes.
      return Finish(baq::cli::UsageError("--module_objective is local mode only (baq quantize)"));
    }
    return Finish(baq::cli::RunSubmit(remote));
  }
  if (command == "list") return Finish(baq::cli::RunList(remote));
  if (command == "status" || command == "watch" || command == "cancel" || command == "delete") {
    if (args.size() != 3) {
      return Finish(baq::cli::UsageError(
          absl::StrCat("usage: baq ", command, " --coordinator HOST:PORT JOB_ID")));
    }
    remote.job_id = args[2];
    if (command == "status") return Finish(baq::cli::RunStatus(remote));
    if (command == "watch") return Finish(baq::cli::RunWatch(remote));
    if (command == "delete") return Finish(baq::cli::RunDelete(remote));
    return Finish(baq::cli::RunCancel(remote));
  }
  std::fprintf(stderr, "%s\n\n", kUsage);
  return Finish(baq::cli::UsageError(absl::StrCat("unknown command \"", command, "\"")));
}
