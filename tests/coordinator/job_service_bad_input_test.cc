// Hostile or broken requests to a real CoordinatorServer (issue 7 item 6):
// a JobSpec with enum values this coordinator does not know and a request
// larger than gRPC's receive limit are refused with a clear canonical code,
// no job is created, and the server keeps serving.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "baq/v1/job.grpc.pb.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/job_manager.h"
#include "coordinator/worker_registry.h"
#include "proto/convert.h"

namespace baq::coordinator {
namespace {

// gRPC's default maximum receive size (the coordinator keeps it).
constexpr size_t kDefaultMaxReceiveBytes = 4 * 1024 * 1024;

class JobServiceBadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    JobManagerDeps deps;
    // Nothing here may run: every request is refused before it is queued.
    deps.execution_factory = [](const JobConfig&, std::vector<BlockEngine*>,
                                JobRunner::ProgressFn) -> std::unique_ptr<JobExecution> {
      ADD_FAILURE() << "a refused job was run";
      return nullptr;
    };
    deps.engine_provider = [](const std::string&) {
      return absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>>(
          absl::UnavailableError("no workers in this test"));
    };
    auto jobs = JobManager::Create(JobManagerOptions(), std::move(deps));
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    jobs_ = *std::move(jobs);
    CoordinatorServerOptions options;
    options.listen_address = "127.0.0.1:0";
    auto server = CoordinatorServer::Start(options, {jobs_.get(), &registry_, nullptr});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(-1);  // Let the client send what the server must refuse.
    stub_ = v1::JobService::NewStub(
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                  grpc::InsecureChannelCredentials(), args));
  }

  void TearDown() override {
    server_.reset();
    jobs_.reset();
  }

  v1::SubmitJobRequest ValidRequest(const std::string& request_id) {
    JobConfig config;
    config.model_dir = "/models/opt";
    config.output_dir = "/out/opt-3";
    config.calibration.files = {"/data/calib.txt"};
    v1::SubmitJobRequest req;
    req.set_request_id(request_id);
    ToProto(config, req.mutable_spec());
    return req;
  }

  grpc::Status Submit(const v1::SubmitJobRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::Job job;
    return stub_->Submit(&ctx, req, &job);
  }

  WorkerRegistry registry_{WorkerRegistryOptions()};
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

struct EnumCase {
  std::string name;
  void (*corrupt)(v1::JobSpec*);
  std::string expected_message;
};

TEST_F(JobServiceBadInputTest, UnknownEnumValuesAreInvalidArgument) {
  // Values from a newer client (or garbage): proto3 keeps them as integers.
  const EnumCase cases[] = {
      {"method",
       [](v1::JobSpec* s) { s->mutable_quantization()->set_method(static_cast<v1::Method>(99)); },
       "unknown method 99"},
      {"mode", [](v1::JobSpec* s) { s->set_mode(static_cast<v1::ExecutionMode>(42)); },
       "unknown execution mode 42"},
      {"format", [](v1::JobSpec* s) { s->add_formats(static_cast<v1::OutputFormat>(7)); },
       "unknown output format 7"},
      {"allocation_scope",
       [](v1::JobSpec* s) {
         s->mutable_quantization()->set_allocation_scope(static_cast<v1::AllocationScope>(-3));
       },
       "unknown allocation scope -3"},
  };
  for (const EnumCase& c : cases) {
    SCOPED_TRACE(c.name);
    v1::SubmitJobRequest req = ValidRequest("enum-" + c.name);
    c.corrupt(req.mutable_spec());
    grpc::Status s = Submit(req);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find(c.expected_message), std::string::npos)
        << s.error_message();
  }
  EXPECT_TRUE(jobs_->List().empty());
}

TEST_F(JobServiceBadInputTest, OversizedRequestIsResourceExhaustedAndServerKeepsServing) {
  v1::SubmitJobRequest req = ValidRequest("huge");
  // One calibration "path" bigger than the receive limit.
  req.mutable_spec()->mutable_calibration()->add_files(
      std::string(kDefaultMaxReceiveBytes + 1024, 'x'));
  grpc::Status s = Submit(req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_NE(s.error_message().find("larger than max"), std::string::npos) << s.error_message();
  EXPECT_TRUE(jobs_->List().empty());

  // The same channel and server still work.
  grpc::Status ok = Submit(ValidRequest("after-huge"));
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(jobs_->List().size(), 1u);
}

}  // namespace
}  // namespace baq::coordinator
