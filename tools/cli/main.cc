// The `baq` command line: flags and dispatch only; the commands live in
// baq_cli (local_commands.h, remote_commands.h).
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
#include "common/job_config.h"
#include "tools/cli/local_commands.h"
#include "tools/cli/remote_commands.h"
#include "tools/cli/tokenize_command.h"

ABSL_FLAG(std::string, model, "", "Model dir (HF layout: config.json, *.safetensors, tokenizer.json)");
ABSL_FLAG(std::string, calib, "", "Calibration text files, comma-separated (encoded separately, concatenated)");
ABSL_FLAG(std::string, out, "", "Output dir; published atomically, must not exist");
ABSL_FLAG(std::string, bits, "3", "Target average bits per weight, in [1, 8] (fractional needs --method baq); several comma-separated targets (2.5,3,4) share one measurement in --mode parallel and write <out>/bits-<t> each");
ABSL_FLAG(std::string, measurement, "", "--mode parallel: keep the measurement (every layer's Hessian) in this dir, or reuse the one there if it is of the same model and calibration; submit: a plain name is kept in the coordinator's <data-dir>/measurements/");
ABSL_FLAG(std::string, method, "baq", "baq | gptq | rtn");
ABSL_FLAG(std::string, format, "fake-quant", "Output formats, comma-separated: fake-quant, packed, gptq");
ABSL_FLAG(std::string, mode, "sequential", "sequential (exact GPTQ protocol) | parallel");
ABSL_FLAG(std::string, allocation, "global",
          "BAQ bit allocation: global (per-layer normalized, exact model average) | global-raw | sublayer (paper)");
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
ABSL_FLAG(int32_t, calibration_shards, 1,
          "quantize/submit (sequential mode): split the calibration windows into this many "
          "shards whose fp64 Hessian partial sums are computed on different workers and merged "
          "in shard order; the output depends on it, not on the worker count");
ABSL_FLAG(bool, quantize_projections, false,
          "Also quantize OPT's project_in/project_out (opt-350m); not implemented yet: rejected");
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
ABSL_FLAG(std::string, tenant, "", "submit: tenant for fair share when the coordinator has no auth (with auth, the token's tenant wins)");
ABSL_FLAG(int32_t, rpc_timeout_s, 30, "Deadline of each RPC to the coordinator, seconds");
ABSL_FLAG(std::string, auth_token_file, "", "Service commands: file holding the coordinator's bearer token (else $BAQ_AUTH_TOKEN)");
ABSL_FLAG(bool, tls, false, "Service commands: TLS to the coordinator, verified against the system roots");
ABSL_FLAG(std::string, tls_ca, "", "Service commands: CA bundle (PEM) that signed the coordinator's certificate; implies TLS");
ABSL_FLAG(std::string, tls_client_cert, "", "Service commands: client certificate (PEM) for mutual TLS");
ABSL_FLAG(std::string, tls_client_key, "", "Service commands: key (PEM) of --tls_client_cert");

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
  status JOB | watch JOB | cancel JOB | list

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

Run `baq --helpfull` for every flag.)";

template <typename T>
bool OrFail(const absl::StatusOr<T>& s) {
  if (!s.ok()) std::fprintf(stderr, "baq: %s\n", std::string(s.status().message()).c_str());
  return s.ok();
}

int Finish(const absl::Status& status) {
  if (status.ok()) return 0;
  std::fprintf(stderr, "baq: error: %s\n", status.ToString().c_str());
  return 1;
}

bool BuildJobConfig(baq::JobConfig& c) {
  c.model_dir = absl::GetFlag(FLAGS_model);
  c.output_dir = absl::GetFlag(FLAGS_out);
  c.calibration.files = absl::StrSplit(absl::GetFlag(FLAGS_calib), ',', absl::SkipEmpty());
  c.calibration.num_samples = absl::GetFlag(FLAGS_nsamples);
  c.calibration.seqlen = absl::GetFlag(FLAGS_seqlen);
  c.calibration.seed = absl::GetFlag(FLAGS_seed);
  c.formats.clear();
  for (absl::string_view f : absl::StrSplit(absl::GetFlag(FLAGS_format), ',', absl::SkipEmpty())) {
    auto parsed = baq::ParseOutputFormat(f);
    if (!OrFail(parsed)) return false;
    c.formats.push_back(*parsed);
  }
  auto method = baq::ParseQuantMethod(absl::GetFlag(FLAGS_method));
  auto mode = baq::ParseExecutionMode(absl::GetFlag(FLAGS_mode));
  auto scope = baq::ParseAllocationScope(absl::GetFlag(FLAGS_allocation));
  if (!OrFail(method) || !OrFail(mode) || !OrFail(scope)) return false;
  c.mode = *mode;
  baq::QuantizationConfig& q = c.quant;
  q.method = *method;
  q.allocation_scope = *scope;
  std::vector<double> targets;
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_bits), ',', absl::SkipEmpty())) {
    double bits = 0;
    if (!absl::SimpleAtod(t, &bits)) {
      std::fprintf(stderr, "baq: --bits: \"%s\" is not a number\n", std::string(t).c_str());
      return false;
    }
    targets.push_back(bits);
  }
  if (targets.empty()) {
    std::fprintf(stderr, "baq: --bits is empty\n");
    return false;
  }
  q.target_bits = targets.front();
  c.extra_target_bits.assign(targets.begin() + 1, targets.end());
  c.measurement_dir = absl::GetFlag(FLAGS_measurement);
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
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view f) {
    return absl::StrContains(f, "tools/cli/main.cc");
  };
  absl::SetFlagsUsageConfig(usage_config);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::fprintf(stderr, "%s\n", kUsage);
    return 2;
  }
  const std::string command = args[1];
  baq::worker::EngineOptions engine;
  engine.device = absl::GetFlag(FLAGS_device);
  engine.num_threads = absl::GetFlag(FLAGS_threads);
  engine.activation_spill.memory_limit_bytes = absl::GetFlag(FLAGS_activation_memory_limit);
  engine.activation_spill.spill_dir = absl::GetFlag(FLAGS_activation_spill_dir);
  engine.hessian_partials = absl::GetFlag(FLAGS_hessian_partials);
  if (command == "quantize") {
    baq::JobConfig config;
    if (!BuildJobConfig(config)) return 2;
    return Finish(baq::cli::RunQuantize(config, engine));
  }
  if (command == "eval") {
    baq::cli::EvalOptions o;
    o.model_dir = absl::GetFlag(FLAGS_model);
    o.text_file = absl::GetFlag(FLAGS_text);
    o.seqlen = absl::GetFlag(FLAGS_seqlen);
    o.max_windows = absl::GetFlag(FLAGS_max_windows);
    o.engine = engine;
    return Finish(baq::cli::RunEval(o));
  }
  if (command == "tokenize") {
    baq::cli::TokenizeOptions o;
    o.model_dir = absl::GetFlag(FLAGS_model);
    o.tokenizer_file = absl::GetFlag(FLAGS_tokenizer);
    o.text_file = absl::GetFlag(FLAGS_text);
    absl::StatusOr<std::string> json = baq::cli::TokenizeToJson(o);
    if (!json.ok()) {
      // Usage errors exit 2 like the other commands' flag errors; a tokenizer
      // or text that was read and refused exits 1.
      if (baq::cli::IsTokenizeUsageError(json.status())) {
        std::fprintf(stderr, "baq tokenize: %s\n", std::string(json.status().message()).c_str());
        return 2;
      }
      return Finish(json.status());
    }
    std::fwrite(json->data(), 1, json->size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
  }
  if (command == "inspect") {
    if (args.size() != 3) {
      std::fprintf(stderr, "usage: baq inspect OUTPUT_DIR\n");
      return 2;
    }
    return Finish(baq::cli::RunInspect(args[2]));
  }
  baq::cli::RemoteCommandOptions remote;
  remote.coordinator = absl::GetFlag(FLAGS_coordinator);
  remote.wait = absl::GetFlag(FLAGS_wait);
  remote.request_id = absl::GetFlag(FLAGS_request_id);
  remote.priority = absl::GetFlag(FLAGS_priority);
  remote.tenant = absl::GetFlag(FLAGS_tenant);
  remote.timeout = absl::Seconds(absl::GetFlag(FLAGS_rpc_timeout_s));
  remote.tls.force = absl::GetFlag(FLAGS_tls);
  remote.tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  remote.tls.cert_file = absl::GetFlag(FLAGS_tls_client_cert);
  remote.tls.key_file = absl::GetFlag(FLAGS_tls_client_key);
  if (const std::string path = absl::GetFlag(FLAGS_auth_token_file); !path.empty()) {
    std::ifstream in(path);
    std::string token;
    if (!(in >> token)) {  // The first word: a trailing newline or comment is fine.
      std::fprintf(stderr, "baq: cannot read a token from --auth_token_file %s\n", path.c_str());
      return 2;
    }
    remote.auth_token = token;
  } else if (const char* env = std::getenv("BAQ_AUTH_TOKEN"); env != nullptr) {
    remote.auth_token = env;
  }
  if (command == "submit") {
    if (!BuildJobConfig(remote.config)) return 2;
    return Finish(baq::cli::RunSubmit(remote));
  }
  if (command == "list") return Finish(baq::cli::RunList(remote));
  if (command == "status" || command == "watch" || command == "cancel") {
    if (args.size() != 3) {
      std::fprintf(stderr, "usage: baq %s --coordinator HOST:PORT JOB_ID\n", command.c_str());
      return 2;
    }
    remote.job_id = args[2];
    if (command == "status") return Finish(baq::cli::RunStatus(remote));
    if (command == "watch") return Finish(baq::cli::RunWatch(remote));
    return Finish(baq::cli::RunCancel(remote));
  }
  std::fprintf(stderr, "baq: unknown command \"%s\"\n\n%s\n", command.c_str(), kUsage);
  return 2;
}
