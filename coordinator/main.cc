// baq-coordinator: the coordinator daemon. Parses flags, wires the worker
// registry, the job manager (JobRunner over the registered workers), the
// gRPC server and the metrics endpoint, then waits for SIGTERM/SIGINT and
// shuts down in order (STYLE R1, R18).
#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <signal.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/job_manager.h"
#include "coordinator/memory_estimate.h"
#include "coordinator/worker_pool.h"
#include "coordinator/worker_registry.h"

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
ABSL_FLAG(int64_t, max_job_memory, 0,
          "Bytes of memory one worker offers to jobs, for admission (0: the smallest registered "
          "worker's memory). A job whose estimate exceeds it fails at submit RESOURCE_EXHAUSTED.");
ABSL_FLAG(absl::Duration, retention_max_age, absl::InfiniteDuration(),
          "Remove finished jobs' checkpoints and stored measurements older than this (never "
          "outputs or job records); inf: keep.");
ABSL_FLAG(int64_t, retention_max_bytes, 0,
          "Keep at most this many bytes of intermediate state in --data_dir, removing the oldest "
          "finished jobs' state first (0: no limit).");

namespace {

constexpr char kUsage[] = R"(runs baq quantization jobs on registered workers.

Usage: baq-coordinator --data_dir=DIR [--listen=HOST:PORT] [--metrics_listen=HOST:PORT]

Examples:
  baq-coordinator --listen=127.0.0.1:7000 --data_dir=/tmp/baq-data --metrics_listen=127.0.0.1:9400
  # then start workers with --coordinator=127.0.0.1:7000 and submit with
  baq submit --coordinator=127.0.0.1:7000 --model=... --calib=... --bits=3 --out=...

Model and calibration paths in a job are read by the workers, the output directory is written
by the coordinator: give them a shared file system. SIGTERM or SIGINT: stop serving, interrupt the
running job (it stays RUNNING on disk and resumes from its checkpoint at the next start), exit 0.)";

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  // --help lists this file's flags (Abseil matches the program name otherwise).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "coordinator/main.cc");
  };
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_data_dir).empty()) {
    std::cerr << "baq-coordinator: --data_dir is required (see --help)\n";
    return 2;
  }
  // Stop signals go to sigwait below, in the main thread only.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto prometheus_registry = std::make_shared<prometheus::Registry>();
  baq::coordinator::CoordinatorMetrics metrics(*prometheus_registry);
  std::unique_ptr<prometheus::Exposer> exposer;
  if (const std::string addr = absl::GetFlag(FLAGS_metrics_listen); !addr.empty()) {
    try {  // civetweb reports a failed bind by throwing.
      exposer = std::make_unique<prometheus::Exposer>(addr);
      exposer->RegisterCollectable(prometheus_registry);
    } catch (const std::exception& e) {
      std::cerr << "baq-coordinator: cannot serve metrics on " << addr << ": " << e.what() << "\n";
      return 1;
    }
  }

  baq::coordinator::WorkerRegistryOptions registry_options;
  registry_options.lease_ttl = absl::GetFlag(FLAGS_lease_ttl);
  baq::coordinator::WorkerRegistry registry(registry_options);
  baq::coordinator::WorkerPoolOptions pool_options;
  pool_options.worker_wait = absl::GetFlag(FLAGS_worker_wait);
  pool_options.min_workers = static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_min_workers)));
  baq::coordinator::WorkerPool pool(&registry, pool_options);

  baq::coordinator::JobManagerOptions job_options;
  job_options.data_dir = absl::GetFlag(FLAGS_data_dir);
  job_options.max_concurrent_jobs = absl::GetFlag(FLAGS_max_concurrent_jobs);
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
  auto server = baq::coordinator::CoordinatorServer::Start(server_options,
                                                           {jobs->get(), &registry, &metrics});
  if (!server.ok()) {
    std::cerr << "baq-coordinator: " << server.status() << "\n";
    return 1;
  }
  std::cerr << "baq-coordinator: serving on port " << (*server)->port() << ", "
            << (*jobs)->List().size() << " job(s) in " << job_options.data_dir << "\n";

  int signal = 0;
  sigwait(&stop_signals, &signal);
  std::cerr << "baq-coordinator: signal " << signal << ", shutting down\n";
  (*server)->Shutdown();  // NOT_SERVING; Watch streams are cancelled after the grace.
  (*jobs)->Shutdown();    // Abort the running job; queued ones stay queued on disk.
  return 0;
}
