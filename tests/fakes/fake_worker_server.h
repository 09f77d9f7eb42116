// tests/fakes/fake_worker_server.h
//
// FakeWorker: one FakeWorkerService (tests/fakes/fake_worker_service.h)
// behind a real gRPC server on 127.0.0.1 port 0, for tests of the
// coordinator's worker clients (WorkerPool, JobFarm). The server starts in
// the constructor and shuts down, without waiting, in the destructor.
// Thread-safe as FakeWorkerService is.
//
// Example:
//   FakeEngineLog log;
//   FakeWorker worker(&log);
//   auto channel = grpc::CreateChannel(worker.address(),
//                                      grpc::InsecureChannelCredentials());
#ifndef BAQ_TESTS_FAKES_FAKE_WORKER_SERVER_H_
#define BAQ_TESTS_FAKES_FAKE_WORKER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/fakes/fake_worker_service.h"

namespace baq::testing {

struct FakeWorker {
  explicit FakeWorker(FakeEngineLog* log) : service(FakeEngineOptions(), log) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
  }
  ~FakeWorker() { server->Shutdown(std::chrono::system_clock::now()); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port); }

  FakeWorkerService service;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

}  // namespace baq::testing

#endif  // BAQ_TESTS_FAKES_FAKE_WORKER_SERVER_H_
