// CoordinatorServer security on a real server (localhost:0) with real stubs:
// TLS and mutual TLS with certificates made for the test, bearer tokens on
// the JobService (UNAUTHENTICATED + metric), the tenant recorded with the
// job, the audit log, and the allowed roots. Jobs run on a fake execution.
#include "coordinator/coordinator_server.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "baq/v1/job.grpc.pb.h"
#include "proto/convert.h"
#include "tests/fakes/fake_job_execution.h"
#include "tests/fakes/test_certs.h"
#include "tests/testing/test_paths.h"

namespace baq::coordinator {
namespace {

using ::baq::testing::ExecutionGate;
using ::testing::HasSubstr;

constexpr char kToken[] = "research-token-0123456789";
constexpr char kOtherToken[] = "platform-token-9876543210";

double Counter(prometheus::Registry& registry, const std::string& name,
               const std::string& reason) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      for (const auto& label : m.label) {
        if (label.name == "reason" && label.value == reason) return m.counter.value;
      }
    }
  }
  return -1;
}

class CoordinatorServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = baq::testing::MakeScratchDir();
    baq::testing::WriteFileOrDie(dir_ + "/models/opt/config.json", "{}");
    baq::testing::WriteFileOrDie(dir_ + "/data/calib.txt", "text");
    baq::testing::WriteFileOrDie(dir_ + "/out/.keep", "");
    baq::testing::WriteFileOrDie(dir_ + "/secret/weights.safetensors", "");
    JobManagerDeps deps;
    deps.execution_factory = gate_.Factory(/*num_blocks=*/1);
    deps.engine_provider = baq::testing::NoEngineProvider();
    deps.metrics = &metrics_;
    auto jobs = JobManager::Create(JobManagerOptions(), std::move(deps));
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    jobs_ = *std::move(jobs);
  }

  void TearDown() override {
    gate_.Open(100);
    server_.reset();
    jobs_.reset();
  }

  void StartServer(const net::TlsOptions& tls, JobServiceSecurity security) {
    CoordinatorServerOptions options;
    options.listen_address = "localhost:0";
    options.tls = tls;
    auto server = CoordinatorServer::Start(options, {jobs_.get(), &registry_, &metrics_, security});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::unique_ptr<v1::JobService::Stub> Stub(const net::TlsOptions& client_tls) {
    auto credentials = net::MakeChannelCredentials(client_tls);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    return v1::JobService::NewStub(
        grpc::CreateChannel(absl::StrCat("localhost:", server_->port()), *credentials));
  }

  static void Prepare(grpc::ClientContext& ctx, const std::string& authorization) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  }

  grpc::Status List(v1::JobService::Stub& stub, const std::string& authorization = "") {
    grpc::ClientContext ctx;
    Prepare(ctx, authorization);
    v1::ListJobsResponse resp;
    return stub.List(&ctx, v1::ListJobsRequest(), &resp);
  }

  JobConfig Config() const {
    JobConfig config;
    config.model_dir = dir_ + "/models/opt";
    config.output_dir = dir_ + "/out/opt-3bit";
    config.calibration.files = {dir_ + "/data/calib.txt"};
    return config;
  }

  grpc::Status Submit(v1::JobService::Stub& stub, const std::string& authorization,
                      const JobConfig& config, v1::Job* job, const std::string& request_id = "r1",
                      const std::string& spec_tenant = "") {
    grpc::ClientContext ctx;
    Prepare(ctx, authorization);
    v1::SubmitJobRequest req;
    req.set_request_id(request_id);
    ToProto(config, req.mutable_spec());
    if (!spec_tenant.empty()) req.mutable_spec()->set_tenant(spec_tenant);
    return stub.Submit(&ctx, req, job);
  }

  std::vector<nlohmann::json> AuditLines(const std::string& path) {
    std::ifstream in(path);
    std::vector<nlohmann::json> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
  }

  // The PKI, or a skip when openssl is missing.
  std::optional<baq::testing::TestPki> Pki() {
    auto pki = baq::testing::MakeTestPki(baq::testing::MakeScratchDir());
    if (!pki.ok()) {
      ADD_FAILURE() << pki.status();
      return std::nullopt;
    }
    return *pki;
  }

  std::string dir_;
  ExecutionGate gate_;
  prometheus::Registry prometheus_;
  CoordinatorMetrics metrics_{prometheus_};
  WorkerRegistry registry_{WorkerRegistryOptions()};
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<CoordinatorServer> server_;
};

TEST_F(CoordinatorServerTest, TlsServerRejectsPlaintextAndUntrustedClients) {
  std::optional<baq::testing::TestPki> pki = Pki();
  if (!pki) return;
  StartServer({pki->server_cert, pki->server_key, ""}, {});
  // The right CA: served.
  auto trusted = Stub({"", "", pki->ca_cert});
  EXPECT_TRUE(List(*trusted).ok()) << List(*trusted).error_message();
  // Plaintext against a TLS port: no connection.
  auto plain = Stub({});
  EXPECT_EQ(List(*plain).error_code(), grpc::StatusCode::UNAVAILABLE);
  // A client that trusts another CA refuses the server's certificate.
  auto wrong_ca = Stub({"", "", pki->other_ca_cert});
  EXPECT_EQ(List(*wrong_ca).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(CoordinatorServerTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  std::optional<baq::testing::TestPki> pki = Pki();
  if (!pki) return;
  StartServer({pki->server_cert, pki->server_key, pki->ca_cert}, {});
  auto with_cert = Stub({pki->client_cert, pki->client_key, pki->ca_cert});
  EXPECT_TRUE(List(*with_cert).ok()) << List(*with_cert).error_message();
  auto without_cert = Stub({"", "", pki->ca_cert});
  EXPECT_EQ(List(*without_cert).error_code(), grpc::StatusCode::UNAVAILABLE);
  auto foreign_cert = Stub({pki->other_client_cert, pki->other_client_key, pki->ca_cert});
  EXPECT_EQ(List(*foreign_cert).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(CoordinatorServerTest, BadTlsFilesFailTheStart) {
  CoordinatorServerOptions options;
  options.listen_address = "localhost:0";
  options.tls = {dir_ + "/missing.crt", dir_ + "/missing.key", ""};
  auto server = CoordinatorServer::Start(options, {jobs_.get(), &registry_, &metrics_, {}});
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("missing.crt"));
  options.tls = {dir_ + "/data/calib.txt", "", ""};  // Certificate without key.
  EXPECT_EQ(CoordinatorServer::Start(options, {jobs_.get(), &registry_, &metrics_, {}})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CoordinatorServerTest, BearerTokenRequiredAndFailuresCounted) {
  auto tokens = TokenTable::Parse(absl::StrCat(kToken, " research\n", kOtherToken, " platform\n"),
                                  "tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  StartServer({}, {&*tokens, nullptr, nullptr});
  auto stub = Stub({});
  const std::string failures = "baq_coordinator_auth_failures_total";

  grpc::Status s = List(*stub);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("Bearer"));
  EXPECT_EQ(Counter(prometheus_, failures, "missing"), 1);

  EXPECT_EQ(List(*stub, "Bearer wrong-token-but-long-enough").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Counter(prometheus_, failures, "unknown_token"), 1);
  EXPECT_EQ(List(*stub, absl::StrCat("Basic ", kToken)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Counter(prometheus_, failures, "malformed"), 1);

  // Every method is guarded, Watch too.
  v1::Job job;
  EXPECT_EQ(Submit(*stub, "", Config(), &job).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  {
    grpc::ClientContext ctx;
    Prepare(ctx, "");
    v1::WatchJobRequest req;
    req.set_id("job-x");
    auto reader = stub->Watch(&ctx, req);
    v1::JobEvent event;
    EXPECT_FALSE(reader->Read(&event));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(Counter(prometheus_, failures, "missing"), 3);
  EXPECT_EQ(jobs_->List().size(), 0u);

  // The right token is served, and the job carries the token's tenant even
  // when the spec claims another.
  EXPECT_TRUE(List(*stub, absl::StrCat("Bearer ", kToken)).ok());
  s = Submit(*stub, absl::StrCat("Bearer ", kToken), Config(), &job, "r1", "platform");
  ASSERT_TRUE(s.ok()) << s.error_message();
  auto record = jobs_->Get(job.id());
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->tenant, "research");
}

TEST_F(CoordinatorServerTest, AuditLogRecordsEveryAction) {
  auto tokens = TokenTable::Parse(absl::StrCat(kToken, " research\n"), "tokens");
  ASSERT_TRUE(tokens.ok());
  const std::string path = dir_ + "/audit.jsonl";
  auto audit = AuditLog::Open(path);
  ASSERT_TRUE(audit.ok()) << audit.status();
  StartServer({}, {&*tokens, audit->get(), nullptr});
  auto stub = Stub({});
  const std::string bearer = absl::StrCat("Bearer ", kToken);

  v1::Job job;
  ASSERT_TRUE(Submit(*stub, bearer, Config(), &job, "req-7").ok());
  {
    grpc::ClientContext ctx;
    Prepare(ctx, bearer);
    v1::CancelJobRequest req;
    req.set_id(job.id());
    v1::Job cancelled;
    ASSERT_TRUE(stub->Cancel(&ctx, req, &cancelled).ok());
  }
  {
    grpc::ClientContext ctx;
    Prepare(ctx, bearer);
    v1::GetJobRequest req;
    req.set_id("job-missing");
    v1::Job missing;
    EXPECT_EQ(stub->Get(&ctx, req, &missing).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_EQ(List(*stub, "Bearer not-the-token-at-all").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  std::vector<nlohmann::json> lines = AuditLines(path);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0]["action"], "submit");
  EXPECT_EQ(lines[0]["tenant"], "research");
  EXPECT_EQ(lines[0]["job_id"], job.id());
  EXPECT_EQ(lines[0]["request_id"], "req-7");
  EXPECT_EQ(lines[0]["result"], "OK");
  EXPECT_THAT(lines[0]["peer"].get<std::string>(), HasSubstr("127.0.0.1"));
  EXPECT_THAT(lines[0]["time"].get<std::string>(), ::testing::MatchesRegex("20..-..-..T.*Z"));
  EXPECT_EQ(lines[1]["action"], "cancel");
  EXPECT_EQ(lines[1]["job_id"], job.id());
  EXPECT_EQ(lines[1]["result"], "OK");
  EXPECT_EQ(lines[2]["action"], "get");
  EXPECT_EQ(lines[2]["result"], "NOT_FOUND");
  EXPECT_EQ(lines[3]["action"], "list");
  EXPECT_EQ(lines[3]["tenant"], "");
  EXPECT_EQ(lines[3]["result"], "UNAUTHENTICATED");
}

TEST_F(CoordinatorServerTest, AuditLogNamesTheClientCertificate) {
  std::optional<baq::testing::TestPki> pki = Pki();
  if (!pki) return;
  const std::string path = dir_ + "/audit.jsonl";
  auto audit = AuditLog::Open(path);
  ASSERT_TRUE(audit.ok());
  StartServer({pki->server_cert, pki->server_key, pki->ca_cert}, {nullptr, audit->get(), nullptr});
  auto stub = Stub({pki->client_cert, pki->client_key, pki->ca_cert});
  ASSERT_TRUE(List(*stub).ok());
  std::vector<nlohmann::json> lines = AuditLines(path);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["cert_cn"], "baq-test-client");
}

TEST_F(CoordinatorServerTest, SubmitOutsideTheAllowedRootsIsRejected) {
  auto roots = AllowedRoots::Create({dir_ + "/models", dir_ + "/data", dir_ + "/out"});
  ASSERT_TRUE(roots.ok()) << roots.status();
  StartServer({}, {nullptr, nullptr, &*roots});
  auto stub = Stub({});
  v1::Job job;
  EXPECT_TRUE(Submit(*stub, "", Config(), &job, "ok").ok());

  JobConfig escape = Config();
  escape.model_dir = dir_ + "/models/../secret";
  grpc::Status s = Submit(*stub, "", escape, &job, "dotdot");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr(escape.model_dir));

  escape = Config();
  escape.output_dir = "relative/out";
  EXPECT_EQ(Submit(*stub, "", escape, &job, "relative").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(jobs_->List().size(), 1u);  // Nothing queued for the rejected ones.
}

}  // namespace
}  // namespace baq::coordinator

namespace baq::coordinator {
namespace {

// --max_message_bytes: a request over the limit is refused before it reaches
// the JobService (the queue and keepalive flags are plain options).
TEST_F(CoordinatorServerTest, RefusesRequestsOverTheMessageLimit) {
  CoordinatorServerOptions options;
  options.listen_address = "localhost:0";
  options.max_receive_message_bytes = 64 << 10;
  options.keepalive_time = absl::Seconds(30);
  auto server = CoordinatorServer::Start(options, {jobs_.get(), &registry_, &metrics_});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::JobService::NewStub(grpc::CreateChannel(
      absl::StrCat("localhost:", (*server)->port()), grpc::InsecureChannelCredentials()));
  JobConfig big = Config();
  big.model_dir = std::string(100 << 10, 'm');
  v1::Job job;
  EXPECT_EQ(Submit(*stub, "", big, &job).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(Submit(*stub, "", Config(), &job).ok());
}

}  // namespace
}  // namespace baq::coordinator
