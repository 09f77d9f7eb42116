// tests/testing/in_process_cluster.h
//
// InProcessCluster: the farm of the daemons, in one test process over
// loopback gRPC. A coordinator (WorkerRegistry, WorkerPool, a JobManager
// running JobRunner over the pool's engines, CoordinatorServer on port 0) and
// any number of CPU workers (WorkerServer with a one-thread LibTorch engine on
// port 0, registered through a CoordinatorLink), wired as baq-coordinator and
// baq-worker wire them. Optionally secured: both servers serve (mutual) TLS,
// the pool's and links' channels present client credentials, and the
// JobService wants bearer tokens.
//
// Ownership: the cluster owns every component; its destructor stops them in
// reverse dependency order (links, workers, coordinator server, jobs, pool,
// registry). The token table and worker metrics passed in are not owned and
// must outlive the cluster.
//
// Thread-compatible: set up and tear down from the test thread; jobs() is as
// thread-safe as JobManager.
//
// Header-only: only tests that link the coordinator and the LibTorch worker
// (tests/tools, through baq_cli) use it.
//
// Example:
//   auto cluster = InProcessCluster::Start();
//   ASSERT_TRUE(cluster.ok()) << cluster.status();
//   ASSERT_TRUE((*cluster)->AddWorker().ok());
//   (*cluster)->jobs().Submit("req-1", config);
#ifndef BAQ_TESTS_TESTING_IN_PROCESS_CLUSTER_H_
#define BAQ_TESTS_TESTING_IN_PROCESS_CLUSTER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/job_auth.h"
#include "coordinator/job_manager.h"
#include "coordinator/worker_pool.h"
#include "coordinator/worker_registry.h"
#include "net/tls_credentials.h"
#include "tests/testing/test_paths.h"
#include "worker/service/coordinator_link.h"
#include "worker/torch_block_engine.h"
#include "worker/service/worker_metrics.h"
#include "worker/service/worker_server.h"

namespace baq::testing {

struct InProcessClusterOptions {
  // Host the coordinator binds (port 0) and the workers and clients dial:
  // "localhost" where the test certificates name it.
  std::string coordinator_host = "127.0.0.1";
  // Certificate, key and client CA both servers serve; empty: plaintext.
  net::TlsOptions server_tls;
  // What the pool's channels to the workers and the links' channels to the
  // coordinator present; null: insecure channels.
  std::shared_ptr<grpc::ChannelCredentials> client_credentials;
  // Bearer tokens the JobService wants; null: none. Not owned.
  const coordinator::TokenTable* tokens = nullptr;
};

class InProcessCluster {
 public:
  // Starts the coordinator side, its JobManager keeping records under a fresh
  // scratch dir. The errors of JobManager::Create and CoordinatorServer::Start.
  static absl::StatusOr<std::unique_ptr<InProcessCluster>> Start(
      InProcessClusterOptions options = {}) {
    std::unique_ptr<InProcessCluster> cluster(new InProcessCluster(std::move(options)));
    coordinator::WorkerPool* pool = &cluster->pool_;
    coordinator::JobManagerDeps deps;
    deps.execution_factory = coordinator::JobRunnerExecutionFactory();
    deps.engine_provider = pool->AsProvider();
    deps.abort_in_flight = [pool] { pool->AbortAll(); };
    coordinator::JobManagerOptions job_options;
    job_options.data_dir = MakeScratchDir();
    auto jobs = coordinator::JobManager::Create(job_options, std::move(deps));
    if (!jobs.ok()) return jobs.status();
    cluster->jobs_ = *std::move(jobs);

    coordinator::CoordinatorServerOptions server_options;
    server_options.listen_address = absl::StrCat(cluster->options_.coordinator_host, ":0");
    server_options.tls = cluster->options_.server_tls;
    coordinator::CoordinatorDeps server_deps{cluster->jobs_.get(), &cluster->registry_, nullptr};
    server_deps.security.tokens = cluster->options_.tokens;
    auto server = coordinator::CoordinatorServer::Start(server_options, server_deps);
    if (!server.ok()) return server.status();
    cluster->coordinator_ = *std::move(server);
    return cluster;
  }

  InProcessCluster(const InProcessCluster&) = delete;
  InProcessCluster& operator=(const InProcessCluster&) = delete;

  ~InProcessCluster() {
    links_.clear();
    workers_.clear();
    coordinator_.reset();
    jobs_.reset();
  }

  // Starts a worker serving "cpu" (LibTorch engine, one intra-op thread)
  // and waits until the coordinator has registered it. `metrics` is
  // nullable, not owned. The errors of WorkerServer::Start; DeadlineExceeded
  // if the registration takes longer than 20 s.
  absl::Status AddWorker(worker::WorkerMetrics* metrics = nullptr) {
    worker::WorkerServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.tls = options_.server_tls;
    worker::WorkerDeps deps;
    deps.engine_factory = [](const std::string& device) {
      worker::EngineOptions engine;
      engine.device = device;
      engine.num_threads = 1;
      return worker::MakeTorchBlockEngine(engine);
    };
    deps.metrics = metrics;
    auto server = worker::WorkerServer::Start(options, std::move(deps));
    if (!server.ok()) return server.status();
    worker::CoordinatorLinkOptions link;
    link.coordinator_address = address();
    link.advertise_address = absl::StrCat("127.0.0.1:", (*server)->port());
    link.devices = {"cpu"};
    link.channel_credentials = options_.client_credentials;
    workers_.push_back(*std::move(server));
    links_.push_back(worker::CoordinatorLink::Start(std::move(link)));
    if (!links_.back()->AwaitRegistered(kRegistrationTimeout)) {
      return absl::DeadlineExceededError(
          absl::StrCat("worker 127.0.0.1:", workers_.back()->port(),
                       " not registered with the coordinator at ", address(), " within ",
                       absl::FormatDuration(kRegistrationTimeout)));
    }
    return absl::OkStatus();
  }

  coordinator::JobManager& jobs() { return *jobs_; }
  // HOST:PORT of the coordinator's gRPC server.
  std::string address() const {
    return absl::StrCat(options_.coordinator_host, ":", coordinator_->port());
  }

 private:
  static constexpr absl::Duration kRegistrationTimeout = absl::Seconds(20);

  explicit InProcessCluster(InProcessClusterOptions options)
      : options_(std::move(options)),
        pool_(&registry_, PoolOptions(options_.client_credentials)) {}

  static coordinator::WorkerPoolOptions PoolOptions(
      std::shared_ptr<grpc::ChannelCredentials> credentials) {
    coordinator::WorkerPoolOptions options;
    options.channel_credentials = std::move(credentials);
    return options;
  }

  // Declared in dependency order; the destructor also stops them in reverse.
  const InProcessClusterOptions options_;
  coordinator::WorkerRegistry registry_{coordinator::WorkerRegistryOptions()};
  coordinator::WorkerPool pool_;
  std::unique_ptr<coordinator::JobManager> jobs_;
  std::unique_ptr<coordinator::CoordinatorServer> coordinator_;
  std::vector<std::unique_ptr<worker::WorkerServer>> workers_;
  std::vector<std::unique_ptr<worker::CoordinatorLink>> links_;
};

}  // namespace baq::testing

#endif  // BAQ_TESTS_TESTING_IN_PROCESS_CLUSTER_H_
