// End to end over real processes' worth of servers in one process: a
// coordinator (JobRunner, worker registry, job service) and two CPU workers
// running the LibTorch engine register over gRPC; the CLI's remote commands
// submit a job on the OPT fixture, watch it to the end, and read it back.
#include "tools/cli/remote_commands.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/job_manager.h"
#include "coordinator/worker_pool.h"
#include "coordinator/worker_registry.h"
#include "net/tls_credentials.h"
#include "tests/fakes/test_certs.h"
#include "tests/testing/test_paths.h"
#include "worker/coordinator_link.h"
#include "worker/torch_block_engine.h"
#include "worker/worker_server.h"

namespace baq::cli {
namespace {

using ::testing::HasSubstr;

// Runs `fn(out)` with a temporary FILE and returns what it printed.
template <typename Fn>
std::string Capture(Fn fn, absl::Status* status) {
  std::FILE* f = std::tmpfile();
  *status = fn(f);
  std::fflush(f);
  std::rewind(f);
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
  std::fclose(f);
  return text;
}

class RemoteCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    coordinator::JobManagerDeps deps;
    deps.execution_factory = coordinator::JobRunnerExecutionFactory();
    deps.engine_provider = pool_.AsProvider();
    deps.abort_in_flight = [this] { pool_.AbortAll(); };
    coordinator::JobManagerOptions options;
    options.data_dir = baq::testing::MakeScratchDir();
    auto jobs = coordinator::JobManager::Create(options, std::move(deps));
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    jobs_ = *std::move(jobs);
    coordinator::CoordinatorServerOptions server_options;
    server_options.listen_address = "127.0.0.1:0";
    auto server =
        coordinator::CoordinatorServer::Start(server_options, {jobs_.get(), &registry_, nullptr});
    ASSERT_TRUE(server.ok()) << server.status();
    coordinator_ = *std::move(server);
    address_ = absl::StrCat("127.0.0.1:", coordinator_->port());
  }

  void StartWorkers(int n) {
    for (int i = 0; i < n; ++i) {
      worker::WorkerServerOptions options;
      options.listen_address = "127.0.0.1:0";
      worker::WorkerDeps deps;
      deps.engine_factory = [](const std::string& device) {
        worker::EngineOptions engine;
        engine.device = device;
        engine.num_threads = 1;
        return worker::MakeTorchBlockEngine(engine);
      };
      auto server = worker::WorkerServer::Start(options, std::move(deps));
      ASSERT_TRUE(server.ok()) << server.status();
      worker::CoordinatorLinkOptions link;
      link.coordinator_address = address_;
      link.advertise_address = absl::StrCat("127.0.0.1:", (*server)->port());
      link.devices = {"cpu"};
      links_.push_back(worker::CoordinatorLink::Start(link));
      ASSERT_TRUE(links_.back()->AwaitRegistered(absl::Seconds(20)));
      workers_.push_back(*std::move(server));
    }
  }

  void TearDown() override {
    links_.clear();
    workers_.clear();
    coordinator_.reset();
    jobs_.reset();
  }

  RemoteCommandOptions Options() {
    RemoteCommandOptions o;
    o.coordinator = address_;
    o.timeout = absl::Seconds(10);
    o.watch_timeout = absl::Minutes(5);
    return o;
  }

  JobConfig FixtureJob() {
    JobConfig config;
    config.model_dir = baq::testing::SharedDataDir() + "/models/opt-fixture";
    config.output_dir = baq::testing::MakeScratchDir() + "/out";
    // A small slice of the corpus: tokenizing all of it would dominate the test.
    const std::string calib = baq::testing::MakeScratchDir() + "/calib.txt";
    std::ifstream in(baq::testing::SharedDataDir() + "/corpus/tiny_shakespeare.txt");
    std::string text(64 * 1024, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    baq::testing::WriteFileOrDie(calib, text);
    config.calibration.files = {calib};
    config.calibration.num_samples = 8;
    config.calibration.seqlen = 64;
    config.quant.target_bits = 3;
    return config;
  }

  // Declared in dependency order; destroyed in reverse by TearDown too.
  coordinator::WorkerRegistry registry_{coordinator::WorkerRegistryOptions()};
  coordinator::WorkerPool pool_{&registry_, coordinator::WorkerPoolOptions()};
  std::unique_ptr<coordinator::JobManager> jobs_;
  std::unique_ptr<coordinator::CoordinatorServer> coordinator_;
  std::string address_;
  std::vector<std::unique_ptr<worker::WorkerServer>> workers_;
  std::vector<std::unique_ptr<worker::CoordinatorLink>> links_;
};

TEST_F(RemoteCommandsTest, SubmitWaitStatusListOnTwoWorkers) {
  if (!baq::testing::HaveSharedData()) GTEST_SKIP() << "no shared fixtures";
  StartWorkers(2);
  RemoteCommandOptions o = Options();
  o.config = FixtureJob();
  o.wait = true;
  o.request_id = "e2e-1";
  absl::Status status;
  std::string text = Capture([&](std::FILE* f) { return RunSubmit(o, f); }, &status);
  ASSERT_TRUE(status.ok()) << status << "\n" << text;
  EXPECT_THAT(text, HasSubstr("submitted job job-"));
  EXPECT_THAT(text, HasSubstr("succeeded: 3.0000 bits (target 3)"));
  EXPECT_TRUE(std::filesystem::exists(o.config.output_dir));

  const std::string id = jobs_->List().at(0).id;
  o.job_id = id;
  text = Capture([&](std::FILE* f) { return RunStatus(o, f); }, &status);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(text, HasSubstr("state      succeeded"));
  EXPECT_THAT(text, HasSubstr("achieved   3.0000 bits"));
  text = Capture([&](std::FILE* f) { return RunList(o, f); }, &status);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(text, HasSubstr(id));
  text = Capture([&](std::FILE* f) { return RunCancel(o, f); }, &status);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_THAT(text, HasSubstr("succeeded"));  // Finished jobs are left alone.
  // A resubmission with the same request id is the same job, not a new run.
  o.wait = false;
  text = Capture([&](std::FILE* f) { return RunSubmit(o, f); }, &status);
  EXPECT_THAT(text, HasSubstr(absl::StrCat("submitted job ", id, " (succeeded)")));
}

TEST_F(RemoteCommandsTest, FailedJobsAndBadRequestsAreErrors) {
  if (!baq::testing::HaveSharedData()) GTEST_SKIP() << "no shared fixtures";
  StartWorkers(1);
  RemoteCommandOptions o = Options();
  o.config = FixtureJob();
  o.config.model_dir = "/nonexistent/model";
  o.wait = true;
  absl::Status status;
  std::string text = Capture([&](std::FILE* f) { return RunSubmit(o, f); }, &status);
  EXPECT_FALSE(status.ok()) << text;
  EXPECT_THAT(status.message(), HasSubstr("failed"));

  o.job_id = "job-that-does-not-exist";
  Capture([&](std::FILE* f) { return RunStatus(o, f); }, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  o.config.calibration.files.clear();
  Capture([&](std::FILE* f) { return RunSubmit(o, f); }, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RemoteCommandsTest, UnreachableCoordinatorIsAnError) {
  RemoteCommandOptions o = Options();
  o.coordinator = "127.0.0.1:1";  // Nothing listens on port 1.
  o.timeout = absl::Seconds(2);
  absl::Status status;
  Capture([&](std::FILE* f) { return RunList(o, f); }, &status);
  // UNAVAILABLE, or DEADLINE_EXCEEDED when the channel's retries outlast the deadline.
  EXPECT_THAT(status.code(), ::testing::AnyOf(absl::StatusCode::kUnavailable,
                                              absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(status.message(), HasSubstr("coordinator 127.0.0.1:1"));
}

// Every channel secured: the coordinator serves mutual TLS and wants a bearer
// token, the worker serves mutual TLS, and the worker's registration, the
// coordinator's calls to the worker and the CLI's calls all present
// certificates from the test CA. A job runs end to end over them.
TEST(SecuredRemoteCommandsTest, SubmitWaitOverMutualTlsWithAToken) {
  if (!baq::testing::HaveSharedData()) GTEST_SKIP() << "no shared fixtures";
  auto pki = baq::testing::MakeTestPki(baq::testing::MakeScratchDir());
  ASSERT_TRUE(pki.ok()) << pki.status();
  const net::TlsOptions server_tls{pki->server_cert, pki->server_key, pki->ca_cert};
  const net::TlsOptions client_tls{pki->client_cert, pki->client_key, pki->ca_cert};
  auto client_credentials = net::MakeChannelCredentials(client_tls);
  ASSERT_TRUE(client_credentials.ok()) << client_credentials.status();
  constexpr char kToken[] = "secured-test-token-0123456789";
  auto tokens = coordinator::TokenTable::Parse(absl::StrCat(kToken, " qa\n"), "test");
  ASSERT_TRUE(tokens.ok());

  coordinator::WorkerRegistry registry{coordinator::WorkerRegistryOptions()};
  coordinator::WorkerPoolOptions pool_options;
  pool_options.channel_credentials = *client_credentials;
  coordinator::WorkerPool pool(&registry, pool_options);
  coordinator::JobManagerDeps deps;
  deps.execution_factory = coordinator::JobRunnerExecutionFactory();
  deps.engine_provider = pool.AsProvider();
  deps.abort_in_flight = [&pool] { pool.AbortAll(); };
  coordinator::JobManagerOptions options;
  options.data_dir = baq::testing::MakeScratchDir();
  auto jobs = coordinator::JobManager::Create(options, std::move(deps));
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  coordinator::CoordinatorServerOptions server_options;
  server_options.listen_address = "localhost:0";
  server_options.tls = server_tls;
  coordinator::CoordinatorDeps server_deps{jobs->get(), &registry, nullptr};
  server_deps.security.tokens = &*tokens;
  auto coordinator = coordinator::CoordinatorServer::Start(server_options, server_deps);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  const std::string address = absl::StrCat("localhost:", (*coordinator)->port());

  worker::WorkerServerOptions worker_options;
  worker_options.listen_address = "127.0.0.1:0";
  worker_options.tls = server_tls;
  worker::WorkerDeps worker_deps;
  worker_deps.engine_factory = [](const std::string& device) {
    worker::EngineOptions engine;
    engine.device = device;
    engine.num_threads = 1;
    return worker::MakeTorchBlockEngine(engine);
  };
  auto worker = worker::WorkerServer::Start(worker_options, std::move(worker_deps));
  ASSERT_TRUE(worker.ok()) << worker.status();
  worker::CoordinatorLinkOptions link_options;
  link_options.coordinator_address = address;
  link_options.advertise_address = absl::StrCat("127.0.0.1:", (*worker)->port());
  link_options.devices = {"cpu"};
  link_options.channel_credentials = *client_credentials;
  auto link = worker::CoordinatorLink::Start(link_options);
  ASSERT_TRUE(link->AwaitRegistered(absl::Seconds(20)));

  RemoteCommandOptions o;
  o.coordinator = address;
  o.timeout = absl::Seconds(10);
  o.watch_timeout = absl::Minutes(5);
  absl::Status status;
  // Without the CA and a client certificate: no connection.
  Capture([&](std::FILE* f) { return RunList(o, f); }, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  // TLS but no token: refused by the JobService.
  o.tls = client_tls;
  Capture([&](std::FILE* f) { return RunList(o, f); }, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << status;
  // Both: the job runs on the worker over mutual TLS.
  o.auth_token = kToken;
  o.wait = true;
  o.config.model_dir = baq::testing::SharedDataDir() + "/models/opt-fixture";
  o.config.output_dir = baq::testing::MakeScratchDir() + "/out";
  const std::string calib = baq::testing::MakeScratchDir() + "/calib.txt";
  baq::testing::WriteFileOrDie(calib, std::string(20000, 'a') + " the quick brown fox\n");
  o.config.calibration.files = {calib};
  o.config.calibration.num_samples = 4;
  o.config.calibration.seqlen = 32;
  o.config.quant.target_bits = 3;
  const std::string text = Capture([&](std::FILE* f) { return RunSubmit(o, f); }, &status);
  EXPECT_TRUE(status.ok()) << status << "\n" << text;
  EXPECT_THAT(text, HasSubstr("succeeded"));
  std::vector<coordinator::JobRecord> records = (*jobs)->List();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].tenant, "qa");

  link->Stop();
  (*worker)->Shutdown();
  (*coordinator)->Shutdown();
}

}  // namespace
}  // namespace baq::cli
