// JobService with bearer tokens: who may do what to whose jobs (issue 21).
// The matrix covers every RPC (Submit, Get, List, Watch, Cancel, Delete) for
// four callers: the job's owner, another tenant, an admin and no token.
// Another tenant's job answers exactly as an unknown one (NOT_FOUND), and
// its refused actions change nothing. Also: List's filters and pages,
// labels, request ids scoped to their tenant, and Delete's audit lines.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "baq/v1/job.grpc.pb.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/job_service.h"
#include "nlohmann/json.hpp"
#include "proto/convert.h"
#include "tests/fakes/fake_job_config.h"
#include "tests/fakes/fake_job_execution.h"

namespace baq::coordinator {
namespace {

using ::baq::testing::ExecutionGate;
using ::baq::testing::FakeJobConfig;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kAlpha[] = "alpha-token-0123456789";
constexpr char kBeta[] = "beta-token-0123456789x";
constexpr char kAdmin[] = "admin-token-0123456789";

enum class Who { kOwner, kOther, kAdmin, kNobody };

std::string TokenOf(Who who) {
  switch (who) {
    case Who::kOwner:
      return kAlpha;
    case Who::kOther:
      return kBeta;
    case Who::kAdmin:
      return kAdmin;
    case Who::kNobody:
      return "";
  }
  return "";
}

const char* NameOf(Who who) {
  switch (who) {
    case Who::kOwner:
      return "owner";
    case Who::kOther:
      return "other tenant";
    case Who::kAdmin:
      return "admin";
    case Who::kNobody:
      return "no token";
  }
  return "?";
}

class JobServiceTenancyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/tenancy-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto tokens = TokenTable::Parse(
        absl::StrCat(kAlpha, " alpha\n", kBeta, " beta tenant\n", kAdmin, " ops admin\n"),
        "tokens");
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    tokens_ = std::make_unique<TokenTable>(*std::move(tokens));
    auto audit = AuditLog::Open(dir_ + "/audit.jsonl");
    ASSERT_TRUE(audit.ok()) << audit.status();
    audit_ = *std::move(audit);

    JobManagerDeps deps;
    deps.execution_factory = gate_.Factory(/*num_blocks=*/1);
    deps.engine_provider = baq::testing::NoEngineProvider();
    JobManagerOptions options;
    options.data_dir = dir_ + "/data";
    auto jobs = JobManager::Create(options, std::move(deps));
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    jobs_ = *std::move(jobs);
    CoordinatorServerOptions server_options;
    server_options.listen_address = "localhost:0";
    auto server = CoordinatorServer::Start(
        server_options, {jobs_.get(), &registry_, &metrics_,
                         JobServiceSecurity{tokens_.get(), audit_.get(), nullptr}});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::JobService::NewStub(grpc::CreateChannel(
        absl::StrCat("localhost:", server_->port()), grpc::InsecureChannelCredentials()));
    // A job of beta's holds the only runner (the gate is closed), so every
    // later job stays QUEUED until the test cancels it.
    blocker_ = MustSubmit(Who::kOther, "blocker");
  }

  void TearDown() override {
    gate_.Open(100);
    server_.reset();
    jobs_.reset();
    std::filesystem::remove_all(dir_);
  }

  static void Prepare(grpc::ClientContext& ctx, Who who) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (who != Who::kNobody) ctx.AddMetadata("authorization", "Bearer " + TokenOf(who));
  }

  grpc::Status Submit(Who who, const std::string& request_id, v1::Job* job,
                      const std::map<std::string, std::string>& labels = {}) {
    grpc::ClientContext ctx;
    Prepare(ctx, who);
    v1::SubmitJobRequest req;
    req.set_request_id(request_id);
    ToProto(FakeJobConfig(dir_ + "/out-" + request_id), req.mutable_spec());
    req.mutable_spec()->mutable_labels()->insert(labels.begin(), labels.end());
    return stub_->Submit(&ctx, req, job);
  }

  std::string MustSubmit(Who who, const std::string& request_id,
                         const std::map<std::string, std::string>& labels = {}) {
    v1::Job job;
    grpc::Status s = Submit(who, request_id, &job, labels);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job.id();
  }

  grpc::Status Get(Who who, const std::string& id, v1::Job* job = nullptr) {
    grpc::ClientContext ctx;
    Prepare(ctx, who);
    v1::GetJobRequest req;
    req.set_id(id);
    v1::Job ignored;
    return stub_->Get(&ctx, req, job != nullptr ? job : &ignored);
  }

  grpc::Status List(Who who, const v1::ListJobsRequest& req, v1::ListJobsResponse* resp) {
    grpc::ClientContext ctx;
    Prepare(ctx, who);
    return stub_->List(&ctx, req, resp);
  }

  std::vector<std::string> ListIds(Who who, const v1::ListJobsRequest& req = {}) {
    v1::ListJobsResponse resp;
    grpc::Status s = List(who, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> ids;
    for (const v1::Job& job : resp.jobs()) ids.push_back(job.id());
    return ids;
  }

  // The first event of a Watch (then the stream is cancelled), or its error.
  grpc::Status Watch(Who who, const std::string& id) {
    grpc::ClientContext ctx;
    Prepare(ctx, who);
    v1::WatchJobRequest req;
    req.set_id(id);
    auto reader = stub_->Watch(&ctx, req);
    v1::JobEvent event;
    if (reader->Read(&event)) {
      ctx.TryCancel();
      reader->Finish();
      return event.job_id() == id ? grpc::Status::OK
                                  : grpc::Status(grpc::StatusCode::INTERNAL, "other job");
    }
    return reader->Finish();
  }

  grpc::Status Cancel(Who who, const std::string& id) {
    grpc::ClientContext ctx;
    Prepare(ctx, who);
    v1::CancelJobRequest req;
    req.set_id(id);
    v1::Job job;
    return stub_->Cancel(&ctx, req, &job);
  }

  grpc::Status Delete(Who who, const std::string& id, v1::DeleteJobResponse* resp = nullptr,
                      bool delete_outputs = false) {
    grpc::ClientContext ctx;
    Prepare(ctx, who);
    v1::DeleteJobRequest req;
    req.set_id(id);
    req.set_delete_outputs(delete_outputs);
    v1::DeleteJobResponse ignored;
    return stub_->Delete(&ctx, req, resp != nullptr ? resp : &ignored);
  }

  v1::JobState StateOf(const std::string& id) {
    v1::Job job;
    EXPECT_TRUE(Get(Who::kAdmin, id, &job).ok());
    return job.state();
  }

  std::vector<nlohmann::json> AuditLines() {
    std::ifstream in(dir_ + "/audit.jsonl");
    std::vector<nlohmann::json> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
  }

  std::string dir_;
  ExecutionGate gate_;
  prometheus::Registry prometheus_;
  CoordinatorMetrics metrics_{prometheus_};
  WorkerRegistry registry_{WorkerRegistryOptions()};
  std::unique_ptr<TokenTable> tokens_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::JobService::Stub> stub_;
  std::string blocker_;
};

constexpr Who kEveryone[] = {Who::kOwner, Who::kOther, Who::kAdmin, Who::kNobody};

// What each caller gets from an RPC on a job of alpha's.
grpc::StatusCode Expected(Who who) {
  switch (who) {
    case Who::kOwner:
    case Who::kAdmin:
      return grpc::StatusCode::OK;
    case Who::kOther:
      return grpc::StatusCode::NOT_FOUND;  // As if it did not exist.
    case Who::kNobody:
      return grpc::StatusCode::UNAUTHENTICATED;
  }
  return grpc::StatusCode::UNKNOWN;
}

TEST_F(JobServiceTenancyTest, SubmitNeedsAToken) {
  for (Who who : kEveryone) {
    v1::Job job;
    grpc::Status s = Submit(who, absl::StrCat("submit-", NameOf(who)), &job);
    EXPECT_EQ(s.error_code(),
              who == Who::kNobody ? grpc::StatusCode::UNAUTHENTICATED : grpc::StatusCode::OK)
        << NameOf(who);
  }
}

TEST_F(JobServiceTenancyTest, GetMatrix) {
  const std::string id = MustSubmit(Who::kOwner, "get");
  for (Who who : kEveryone) EXPECT_EQ(Get(who, id).error_code(), Expected(who)) << NameOf(who);
  // The other tenant's answer is the one for an id that does not exist.
  grpc::Status unknown = Get(Who::kOther, "job-does-not-exist");
  grpc::Status hidden = Get(Who::kOther, id);
  EXPECT_EQ(hidden.error_code(), unknown.error_code());
  EXPECT_EQ(hidden.error_message(), absl::StrCat("no job ", id));
}

TEST_F(JobServiceTenancyTest, WatchMatrix) {
  const std::string id = MustSubmit(Who::kOwner, "watch");
  for (Who who : kEveryone) EXPECT_EQ(Watch(who, id).error_code(), Expected(who)) << NameOf(who);
}

TEST_F(JobServiceTenancyTest, CancelMatrix) {
  for (Who who : kEveryone) {
    const std::string id = MustSubmit(Who::kOwner, absl::StrCat("cancel-", NameOf(who)));
    EXPECT_EQ(Cancel(who, id).error_code(), Expected(who)) << NameOf(who);
    // A refused cancel changed nothing.
    EXPECT_EQ(StateOf(id), Expected(who) == grpc::StatusCode::OK ? v1::JOB_STATE_CANCELLED
                                                                 : v1::JOB_STATE_QUEUED)
        << NameOf(who);
  }
}

TEST_F(JobServiceTenancyTest, DeleteMatrix) {
  for (Who who : kEveryone) {
    const std::string id = MustSubmit(Who::kOwner, absl::StrCat("delete-", NameOf(who)));
    ASSERT_TRUE(Cancel(Who::kOwner, id).ok());
    EXPECT_EQ(Delete(who, id).error_code(), Expected(who)) << NameOf(who);
    // A refused delete changed nothing; an allowed one forgot the job.
    EXPECT_EQ(Get(Who::kAdmin, id).error_code(), Expected(who) == grpc::StatusCode::OK
                                                     ? grpc::StatusCode::NOT_FOUND
                                                     : grpc::StatusCode::OK)
        << NameOf(who);
  }
}

TEST_F(JobServiceTenancyTest, ListMatrix) {
  const std::string a1 = MustSubmit(Who::kOwner, "list-1");
  const std::string b1 = MustSubmit(Who::kOther, "list-2");
  const std::string a2 = MustSubmit(Who::kOwner, "list-3");
  EXPECT_THAT(ListIds(Who::kOwner), ElementsAre(a1, a2));
  EXPECT_THAT(ListIds(Who::kOther), ElementsAre(blocker_, b1));
  EXPECT_THAT(ListIds(Who::kAdmin), ElementsAre(blocker_, a1, b1, a2));
  v1::ListJobsResponse resp;
  EXPECT_EQ(List(Who::kNobody, {}, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // A tenant filter: one's own is fine, another's is refused; admins may.
  v1::ListJobsRequest alpha_only;
  alpha_only.set_tenant("alpha");
  EXPECT_THAT(ListIds(Who::kOwner, alpha_only), ElementsAre(a1, a2));
  EXPECT_EQ(List(Who::kOther, alpha_only, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(ListIds(Who::kAdmin, alpha_only), ElementsAre(a1, a2));
}

TEST_F(JobServiceTenancyTest, RequestIdsAreScopedToTheTenant) {
  v1::Job first, retry, other;
  ASSERT_TRUE(Submit(Who::kOwner, "nightly-42", &first).ok());
  ASSERT_TRUE(Submit(Who::kOwner, "nightly-42", &retry).ok());
  EXPECT_EQ(retry.id(), first.id());
  // beta's run with the same key is beta's own job, not alpha's.
  ASSERT_TRUE(Submit(Who::kOther, "nightly-42", &other).ok());
  EXPECT_NE(other.id(), first.id());
  EXPECT_EQ(other.tenant(), "beta");
}

TEST_F(JobServiceTenancyTest, ListFiltersByStateAndLabelsInPages) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(MustSubmit(Who::kOwner, absl::StrCat("page-", i),
                             {{"team", i % 2 == 0 ? "nlp" : "vision"}, {"run", "r1"}}));
  }
  ASSERT_TRUE(Cancel(Who::kOwner, ids[4]).ok());

  v1::ListJobsRequest req;
  req.set_page_size(2);
  std::vector<std::string> seen;
  int pages = 0;
  do {
    v1::ListJobsResponse resp;
    ASSERT_TRUE(List(Who::kOwner, req, &resp).ok());
    EXPECT_LE(resp.jobs_size(), 2);
    for (const v1::Job& job : resp.jobs()) seen.push_back(job.id());
    req.set_page_token(resp.next_page_token());
    ++pages;
  } while (!req.page_token().empty() && pages < 10);
  EXPECT_EQ(seen, ids);
  EXPECT_EQ(pages, 3);

  v1::ListJobsRequest nlp;
  (*nlp.mutable_labels())["team"] = "nlp";
  EXPECT_THAT(ListIds(Who::kOwner, nlp), ElementsAre(ids[0], ids[2], ids[4]));
  nlp.add_states(v1::JOB_STATE_QUEUED);
  EXPECT_THAT(ListIds(Who::kOwner, nlp), ElementsAre(ids[0], ids[2]));
  (*nlp.mutable_labels())["run"] = "r2";
  EXPECT_THAT(ListIds(Who::kOwner, nlp), IsEmpty());

  v1::ListJobsResponse resp;
  v1::ListJobsRequest bad;
  bad.set_page_token("not-a-token");
  EXPECT_EQ(List(Who::kOwner, bad, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // Labels come back on the job's spec.
  v1::Job job;
  ASSERT_TRUE(Get(Who::kOwner, ids[1], &job).ok());
  EXPECT_EQ(job.spec().labels().at("team"), "vision");
}

TEST_F(JobServiceTenancyTest, BadLabelsAreRefused) {
  v1::Job job;
  EXPECT_EQ(Submit(Who::kOwner, "l1", &job, {{"Team", "x"}}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Submit(Who::kOwner, "l2", &job, {{"team", std::string(300, 'x')}}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  std::map<std::string, std::string> many;
  for (int i = 0; i < 17; ++i) many[absl::StrCat("k", i)] = "v";
  EXPECT_EQ(Submit(Who::kOwner, "l3", &job, many).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(JobServiceTenancyTest, DeleteRefusesUnfinishedJobsAndIsAudited) {
  const std::string id = MustSubmit(Who::kOwner, "del");
  grpc::Status queued = Delete(Who::kOwner, id);
  EXPECT_EQ(queued.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(queued.error_message(), ::testing::HasSubstr("cancel it first"));
  EXPECT_EQ(Delete(Who::kAdmin, blocker_).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  ASSERT_TRUE(Cancel(Who::kOwner, id).ok());
  const std::string record = dir_ + "/data/jobs/" + id + ".json";
  ASSERT_TRUE(std::filesystem::exists(record));
  v1::DeleteJobResponse resp;
  ASSERT_TRUE(Delete(Who::kOwner, id, &resp).ok());
  EXPECT_EQ(resp.id(), id);
  EXPECT_THAT(resp.removed_paths(), ElementsAre(record));
  EXPECT_FALSE(std::filesystem::exists(record));
  EXPECT_EQ(Delete(Who::kOwner, id).error_code(), grpc::StatusCode::NOT_FOUND);
  // Its request id is free again.
  v1::Job again;
  ASSERT_TRUE(Submit(Who::kOwner, "del", &again).ok());
  EXPECT_NE(again.id(), id);

  int deletes = 0;
  for (const nlohmann::json& line : AuditLines()) {
    if (line["action"] != "delete" || line["job_id"] != id) continue;
    ++deletes;
    EXPECT_EQ(line["tenant"], "alpha");
  }
  EXPECT_EQ(deletes, 3);  // FAILED_PRECONDITION, OK, NOT_FOUND.
}

}  // namespace
}  // namespace baq::coordinator
