// CoordinatorLink against a fake coordinator registry on a real gRPC server:
// registration with retries, heartbeats at ttl/3, re-registration when told.
#include "worker/service/coordinator_link.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/version.h"

namespace baq::worker {
namespace {

constexpr absl::Duration kWait = absl::Seconds(20);

// Registry double: counts calls; can refuse registrations or ask for one.
class FakeRegistry final : public v1::CoordinatorService::Service {
 public:
  grpc::Status RegisterWorker(grpc::ServerContext*, const v1::RegisterWorkerRequest* req,
                              v1::RegisterWorkerResponse* resp) override {
    absl::MutexLock lock(&mu_);
    if (refuse_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "starting up");
    last_request_ = *req;
    ++epoch_;
    resp->mutable_lease()->set_worker_id("w001");
    resp->mutable_lease()->set_epoch(epoch_);
    resp->mutable_lease()->set_ttl_seconds(0.3);  // Heartbeats every 100 ms.
    return grpc::Status::OK;
  }

  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* req,
                         v1::HeartbeatResponse* resp) override {
    absl::MutexLock lock(&mu_);
    ++heartbeats_;
    const bool current = req->epoch() == epoch_ && !expire_;
    expire_ = false;
    resp->set_ok(current);
    resp->set_reregister(!current);
    return grpc::Status::OK;
  }

  void set_refuse(bool refuse) {
    absl::MutexLock lock(&mu_);
    refuse_ = refuse;
  }
  void ExpireLease() {
    absl::MutexLock lock(&mu_);
    expire_ = true;
  }
  // Blocks until `pred` holds or the wait ends; returns it.
  bool Await(const std::function<bool(const FakeRegistry&)>& pred) {
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pred(*this); };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), kWait);
  }

  // Read under Await's lock only.
  int64_t epoch_ = 0;
  int heartbeats_ = 0;
  v1::RegisterWorkerRequest last_request_;

 private:
  absl::Mutex mu_;
  bool refuse_ = false;
  bool expire_ = false;
};

class CoordinatorLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("localhost:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&registry_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override { server_->Shutdown(); }

  CoordinatorLinkOptions Options() {
    CoordinatorLinkOptions options;
    options.coordinator_address = absl::StrCat("localhost:", port_);
    options.advertise_address = "worker-host:7001";
    options.devices = {"cpu", "cuda:0"};
    options.memory_bytes = 1 << 30;
    options.rpc_timeout = absl::Seconds(5);
    options.retry_interval = absl::Milliseconds(20);
    return options;
  }

  FakeRegistry registry_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(CoordinatorLinkTest, RegistersThenHeartbeats) {
  auto link = CoordinatorLink::Start(Options());
  ASSERT_TRUE(link->AwaitRegistered(kWait));
  EXPECT_EQ(link->lease()->worker_id, "w001");
  EXPECT_TRUE(registry_.Await([](const FakeRegistry& r) { return r.heartbeats_ >= 3; }));
  EXPECT_TRUE(registry_.Await([](const FakeRegistry& r) {
    return r.last_request_.address() == "worker-host:7001" && r.last_request_.devices_size() == 2 &&
           r.last_request_.memory_bytes() == (1 << 30) &&
           // The version handshake (coordinator/registry_service.h).
           r.last_request_.protocol_version() == kWorkerProtocolVersion &&
           r.last_request_.version() == BaqVersion();
  }));
  EXPECT_EQ(link->registrations(), 1);
}

TEST_F(CoordinatorLinkTest, RetriesUntilTheCoordinatorAcceptsIt) {
  registry_.set_refuse(true);
  auto link = CoordinatorLink::Start(Options());
  EXPECT_FALSE(link->AwaitRegistered(absl::Milliseconds(100)));
  registry_.set_refuse(false);
  EXPECT_TRUE(link->AwaitRegistered(kWait));
}

TEST_F(CoordinatorLinkTest, RegistersAgainWhenItsLeaseIsGone) {
  auto link = CoordinatorLink::Start(Options());
  ASSERT_TRUE(link->AwaitRegistered(kWait));
  registry_.ExpireLease();
  EXPECT_TRUE(registry_.Await([](const FakeRegistry& r) { return r.epoch_ >= 2; }));
  ASSERT_TRUE(link->AwaitRegistered(kWait));
  EXPECT_GE(link->registrations(), 2);
}

TEST_F(CoordinatorLinkTest, StopReturnsPromptly) {
  auto link = CoordinatorLink::Start(Options());
  ASSERT_TRUE(link->AwaitRegistered(kWait));
  const absl::Time start = absl::Now();
  link->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

}  // namespace
}  // namespace baq::worker
