// End to end over real processes' worth of servers in one process: a
// coordinator (JobRunner, worker registry, job service) and two CPU workers
// running the LibTorch engine register over gRPC; the CLI's remote commands
// submit a job on the OPT fixture, watch it to the end, and read it back.
#include "tools/cli/remote_commands.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/job_auth.h"
#include "coordinator/job_manager.h"
#include "net/tls_credentials.h"
#include "tests/fakes/test_certs.h"
#include "tests/testing/in_process_cluster.h"
#include "tests/testing/test_paths.h"

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
    auto cluster = baq::testing::InProcessCluster::Start();
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    address_ = cluster_->address();
  }

  void StartWorkers(int n) {
    for (int i = 0; i < n; ++i) {
      const absl::Status worker = cluster_->AddWorker();
      ASSERT_TRUE(worker.ok()) << worker;
    }
  }

  RemoteCommandOptions Options() {
    RemoteCommandOptions o;
    o.coordinator = address_;
    o.timeout = absl::Seconds(10);
    o.watch_deadline = absl::Minutes(5);
    return o;
  }

  JobConfig FixtureJob() {
    JobConfig config;
    config.model_dir = baq::testing::SharedDataDir() + "/models/opt-fixture";
    config.output_dir = baq::testing::MakeScratchDir() + "/out";
    // A small slice of the corpus: tokenizing all of it would dominate the test.
    const std::string calib = baq::testing::MakeScratchDir() + "/calib.txt";
    baq::testing::WriteFileOrDie(calib, baq::testing::SharedCorpusPrefix(64 * 1024));
    config.calibration.files = {calib};
    config.calibration.num_samples = 8;
    config.calibration.seqlen = 64;
    config.quant.target_bits = 3;
    return config;
  }

  std::unique_ptr<baq::testing::InProcessCluster> cluster_;
  std::string address_;  // The coordinator's.
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

  const std::string id = cluster_->jobs().List().at(0).id;
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

  baq::testing::InProcessClusterOptions cluster_options;
  cluster_options.coordinator_host = "localhost";  // The name the test certificate holds.
  cluster_options.server_tls = server_tls;
  cluster_options.client_credentials = *client_credentials;
  cluster_options.tokens = &*tokens;
  auto cluster = baq::testing::InProcessCluster::Start(cluster_options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  const absl::Status worker = (*cluster)->AddWorker();
  ASSERT_TRUE(worker.ok()) << worker;
  const std::string address = (*cluster)->address();

  RemoteCommandOptions o;
  o.coordinator = address;
  o.timeout = absl::Seconds(10);
  o.watch_deadline = absl::Minutes(5);
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
  std::vector<coordinator::JobRecord> records = (*cluster)->jobs().List();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].tenant, "qa");
}

}  // namespace
}  // namespace baq::cli
