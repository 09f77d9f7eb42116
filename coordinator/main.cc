// baq-coordinator: the coordinator daemon. Parses flags, wires the worker
// registry, the job manager (JobRunner over the registered workers), the
// gRPC server and the metrics endpoint, then waits for SIGTERM/SIGINT and
// shuts down in order (STYLE R1, R18).
#include <malloc.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "common/allowed_roots.h"
#include "common/trace_recorder.h"
#include "coordinator/audit_log.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/data_dir_collector.h"
#include "coordinator/job_manager.h"
#include "coordinator/memory_estimate.h"
#include "coordinator/worker_pool.h"
#include "coordinator/worker_registry.h"
#include "daemon/daemon.h"
#include "daemon/daemon_flags.h"
#include "net/tls_credentials.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:7000", "gRPC address to serve on, HOST:PORT.");
ABSL_FLAG(std::string, data_dir, "", "Directory for job records (required).");
ABSL_FLAG(std::string, metrics_listen, "",
          "Prometheus /metrics address, HOST:PORT; empty: no metrics endpoint.");
ABSL_FLAG(absl::Duration, lease_ttl, absl::Seconds(15),
          "A worker that misses heartbeats this long is dropped.");
ABSL_FLAG(absl::Duration, worker_wait, absl::Seconds(60),
          "How long a starting job waits for --min_workers before failing UNAVAILABLE.");
ABSL_FLAG(int, min_workers, 1, "Workers a job needs to start.");
ABSL_FLAG(int, max_concurrent_jobs, 1, "Jobs run at once (they share the workers).");
ABSL_FLAG(int, max_worker_failures, 3,
          "Worker losses (crash, hang, partition) one job survives; one more fails it.");
ABSL_FLAG(std::string, shard_checkpoint_dir, "",
          "Where workers checkpoint their resident calibration shards (<dir>/<job id>/): a "
          "directory every worker can write and a replacement worker can read, e.g. a shared "
          "volume mounted at the same path in every worker; empty: <data_dir>/jobs/<id>/shards "
          "(workers on the coordinator's host).");
ABSL_FLAG(int, shard_checkpoint_every, 4,
          "Workers checkpoint their calibration shards every this many blocks; recovering a lost "
          "worker replays at most this many blocks of forward work (0: never checkpoint; a lost "
          "shard is re-embedded and replayed from block 0).");
ABSL_FLAG(int64_t, max_job_memory, 0,
          "Bytes of memory one worker offers to jobs, for admission (0: the smallest registered "
          "worker's memory). A job whose estimate exceeds it fails at submit RESOURCE_EXHAUSTED.");
ABSL_FLAG(absl::Duration, retention_max_age, absl::InfiniteDuration(),
          "Remove finished jobs' checkpoints and stored measurements older than this (never "
          "outputs or job records); inf: keep.");
ABSL_FLAG(int64_t, retention_max_bytes, 0,
          "Keep at most this many bytes of intermediate state in --data_dir, removing the oldest "
          "finished jobs' state first (0: no limit).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate this coordinator serves (and presents to workers); empty: plaintext.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle: clients and workers must present a certificate it signed (mutual TLS), "
          "and workers' certificates are verified against it.");
ABSL_FLAG(std::string, auth_token_file, "",
          "File of `TOKEN TENANT` lines; JobService calls need `authorization: Bearer TOKEN`. "
          "Empty: no authentication.");
ABSL_FLAG(std::string, audit_log, "",
          "File to append one JSON line per job action to (fsync'ed); empty: no audit log.");
ABSL_FLAG(std::string, trace_file, "",
          "Write a timeline of the jobs run (Chrome trace JSON: per-block engine calls incl. RPC "
          "waits, checkpoint writes, bit allocation) to this file at shutdown; empty: no trace.");
ABSL_FLAG(int, max_queued_jobs, 1000,
          "Submit fails RESOURCE_EXHAUSTED while this many jobs are queued.");
ABSL_FLAG(int, max_message_bytes, 4 << 20,
          "Largest gRPC request message accepted, bytes (RESOURCE_EXHAUSTED beyond).");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Minutes(2),
          "Ping idle client and worker connections this often (HTTP/2 keepalive).");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(20),
          "Close a connection whose keepalive ping is unanswered this long.");
ABSL_FLAG(absl::Duration, keepalive_min_client_interval, absl::Seconds(10),
          "Clients may send keepalive pings at most this often (faster: the connection is "
          "closed with GOAWAY).");
ABSL_FLAG(std::vector<std::string>, allowed_root, {},
          "Directories (comma-separated) a job's model, calibration, eval and output paths must "
          "resolve under; empty: any path.");

namespace {

constexpr char kUsage[] = R"(runs baq quantization jobs on registered workers.

Usage: baq-coordinator --data_dir=DIR [--listen=HOST:PORT] [--metrics_listen=HOST:PORT]

Examples:
  baq-coordinator --listen=127.0.0.1:7000 --data_dir=/tmp/baq-data --metrics_listen=127.0.0.1:9400
  # then start workers with --coordinator=127.0.0.1:7000 and submit with
  baq submit --coordinator=127.0.0.1:7000 --model=... --calib=... --bits=3 --out=...
  # Secured: mutual TLS, bearer tokens, an audit log, jobs confined to two trees:
  baq-coordinator --listen=0.0.0.0:7000 --data_dir=/var/lib/baq --tls_cert=/etc/baq/tls.crt \
      --tls_key=/etc/baq/tls.key --tls_ca=/etc/baq/ca.crt --auth_token_file=/etc/baq/tokens \
      --audit_log=/var/log/baq/audit.jsonl --allowed_root=/models,/outputs

Model and calibration paths in a job are read by the workers, the output directory is written
by the coordinator: give them a shared file system. SIGTERM or SIGINT: stop serving, interrupt the
running job (it stays RUNNING on disk and resumes from its checkpoint at the next start), exit 0.)";

// glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB), so the
// per-block buffers that follow (Hessian partials and sums of a few MiB, one block's weights and
// outputs, the 1 MiB stream chunks) land in the heap and the per-thread arenas, where what one
// phase of a block frees often cannot serve the next phase's allocations (other threads, other
// sizes) and is not returned to the system. Measured on a 1024-wide random LLaMA (2 blocks, 2
// workers, 2 calibration shards; 2-core x86 CPU, Debian 12): peak RSS 259 MiB with the dynamic
// threshold, 141 MiB with this fixed one, and 227 MiB vs 36 MiB still resident after the job.
// Buffers from 1 MiB up get their own mapping and go back to the system when freed.
constexpr int kMmapThresholdBytes = 1 << 20;

}  // namespace

int main(int argc, char** argv) {
  // Before any allocation the threshold should govern; a fixed value also
  // turns off glibc's dynamic adjustment (mallopt(3)).
  mallopt(M_MMAP_THRESHOLD, kMmapThresholdBytes);
  baq::daemon::ParseDaemonCommandLine(argc, argv, kUsage, "coordinator/main.cc");
  if (absl::GetFlag(FLAGS_data_dir).empty()) {
    std::cerr << "baq-coordinator: --data_dir is required (see --help)\n";
    return 2;
  }
  baq::daemon::StopSignals stop_signals;  // Before any thread starts.
  const std::string trace_file = absl::GetFlag(FLAGS_trace_file);
  baq::trace::StartGlobalTrace(trace_file, "coordinator");

  auto prometheus_registry = std::make_shared<prometheus::Registry>();
  baq::coordinator::CoordinatorMetrics metrics(*prometheus_registry);
  auto exposer = baq::daemon::StartMetricsEndpointIfSet(absl::GetFlag(FLAGS_metrics_listen),
                                                        prometheus_registry);
  if (!exposer.ok()) {
    std::cerr << "baq-coordinator: " << exposer.status() << "\n";
    return 1;
  }
  if (*exposer != nullptr) {
    (*exposer)->Add(
        std::make_shared<baq::coordinator::DataDirCollector>(absl::GetFlag(FLAGS_data_dir)));
  }

  // Security: one TLS setup for the server and the channels to the workers.
  baq::net::TlsOptions tls{absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                           absl::GetFlag(FLAGS_tls_ca)};
  auto worker_credentials = baq::net::MakeChannelCredentials(tls);
  if (!worker_credentials.ok()) {
    std::cerr << "baq-coordinator: " << worker_credentials.status() << "\n";
    return 2;
  }
  baq::coordinator::JobServiceSecurity security;
  std::optional<baq::coordinator::TokenTable> tokens;
  if (const std::string path = absl::GetFlag(FLAGS_auth_token_file); !path.empty()) {
    auto loaded = baq::coordinator::TokenTable::Load(path);
    if (!loaded.ok()) {
      std::cerr << "baq-coordinator: " << loaded.status() << "\n";
      return 2;
    }
    tokens = *std::move(loaded);
    security.tokens = &*tokens;
  }
  std::unique_ptr<baq::coordinator::AuditLog> audit;
  if (const std::string path = absl::GetFlag(FLAGS_audit_log); !path.empty()) {
    auto opened = baq::coordinator::AuditLog::Open(path);
    if (!opened.ok()) {
      std::cerr << "baq-coordinator: " << opened.status() << "\n";
      return 2;
    }
    audit = *std::move(opened);
    security.audit = audit.get();
  }
  auto allowed_roots = baq::AllowedRoots::Create(absl::GetFlag(FLAGS_allowed_root));
  if (!allowed_roots.ok()) {
    std::cerr << "baq-coordinator: --allowed_root: " << allowed_roots.status() << "\n";
    return 2;
  }
  security.allowed_roots = &*allowed_roots;
  if (!tls.enabled()) {
    std::cerr << "baq-coordinator: WARNING: no --tls_cert: serving plaintext gRPC; use only on "
                 "a trusted network\n";
  }
  if (tokens == std::nullopt) {
    std::cerr << "baq-coordinator: WARNING: no --auth_token_file: any client may submit and "
                 "cancel jobs\n";
  }

  baq::coordinator::WorkerRegistryOptions registry_options;
  registry_options.lease_ttl = absl::GetFlag(FLAGS_lease_ttl);
  baq::coordinator::WorkerRegistry registry(registry_options);
  baq::coordinator::WorkerPoolOptions pool_options;
  pool_options.worker_wait = absl::GetFlag(FLAGS_worker_wait);
  pool_options.min_workers = static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_min_workers)));
  pool_options.channel_credentials = *worker_credentials;
  baq::coordinator::WorkerPool pool(&registry, pool_options);

  baq::coordinator::JobManagerOptions job_options;
  job_options.data_dir = absl::GetFlag(FLAGS_data_dir);
  job_options.max_concurrent_jobs = absl::GetFlag(FLAGS_max_concurrent_jobs);
  if (absl::GetFlag(FLAGS_max_queued_jobs) < 1 || absl::GetFlag(FLAGS_max_message_bytes) < 1024) {
    std::cerr << "baq-coordinator: --max_queued_jobs must be >= 1 and --max_message_bytes >= "
                 "1024\n";
    return 2;
  }
  job_options.max_queued_jobs = static_cast<size_t>(absl::GetFlag(FLAGS_max_queued_jobs));
  job_options.retention.max_age = absl::GetFlag(FLAGS_retention_max_age);
  job_options.retention.max_bytes = absl::GetFlag(FLAGS_retention_max_bytes);
  baq::coordinator::JobManagerDeps job_deps;
  job_deps.execution_factory = baq::coordinator::JobRunnerExecutionFactory();
  job_deps.engine_provider = pool.AsProvider();
  // Checkpoints in --data_dir/jobs/<id>/, replacements from the pool: jobs
  // survive worker losses and resume after a restart.
  baq::coordinator::JobRecovery recovery;
  recovery.data_dir = job_options.data_dir;
  recovery.more_engines = [&pool](const std::string& id) { return pool.MoreEnginesFor(id); };
  recovery.max_worker_failures = std::max(0, absl::GetFlag(FLAGS_max_worker_failures));
  recovery.replacement_wait = absl::GetFlag(FLAGS_worker_wait);
  recovery.shard_checkpoint_dir = absl::GetFlag(FLAGS_shard_checkpoint_dir);
  recovery.shard_checkpoint_every = std::max(0, absl::GetFlag(FLAGS_shard_checkpoint_every));
  recovery.metrics = &metrics;
  job_deps.resumable_execution_factory =
      baq::coordinator::JobRunnerExecutionFactory(std::move(recovery));
  job_deps.metrics = &metrics;
  job_deps.abort_in_flight = [&pool] { pool.AbortAll(); };
  job_deps.memory_capacity =
      baq::coordinator::WorkerMemoryCapacity(&registry, absl::GetFlag(FLAGS_max_job_memory));
  auto jobs = baq::coordinator::JobManager::Create(job_options, std::move(job_deps));
  if (!jobs.ok()) {
    std::cerr << "baq-coordinator: " << jobs.status() << "\n";
    return 1;
  }

  baq::coordinator::CoordinatorServerOptions server_options;
  server_options.listen_address = absl::GetFlag(FLAGS_listen);
  server_options.tls = tls;
  server_options.max_receive_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  server_options.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  server_options.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  server_options.keepalive_min_client_interval =
      absl::GetFlag(FLAGS_keepalive_min_client_interval);
  auto server = baq::coordinator::CoordinatorServer::Start(
      server_options, {jobs->get(), &registry, &metrics, security});
  if (!server.ok()) {
    std::cerr << "baq-coordinator: " << server.status() << "\n";
    return 1;
  }
  std::cerr << "baq-coordinator: serving on port " << (*server)->port() << " ("
            << baq::net::DescribeServerSecurity(tls) << "), " << (*jobs)->List().size()
            << " job(s) in " << job_options.data_dir << "\n";

  const int signal = stop_signals.Wait();
  std::cerr << "baq-coordinator: signal " << signal << ", shutting down\n";
  (*server)->Shutdown();  // NOT_SERVING; Watch streams are cancelled after the grace.
  (*jobs)->Shutdown();    // Abort the running job; queued ones stay queued on disk.
  if (absl::Status s = baq::trace::FinishGlobalTrace(trace_file); !s.ok()) {
    std::cerr << "baq-coordinator: " << s << "\n";
  }
  return 0;
}
