// deploy/docker/baq_health_probe.cc
//
// baq-health-probe: a standard grpc.health.v1.Health/Check client for the
// container images' HEALTHCHECK (Kubernetes uses its native `grpc:` probes
// and does not need it). It does what grpc-ecosystem/grpc-health-probe does,
// but builds from the gRPC C++ packages the image already has, so no binary
// has to be downloaded at image build time.
//
// The health messages are tiny, so they are encoded by hand on a generic stub
// instead of running protoc on health.proto:
//   HealthCheckRequest  { string service = 1; }        -> 0x0a len bytes
//   HealthCheckResponse { ServingStatus status = 1; }  -> 0x08 varint
// (grpc/src/proto/grpc/health/v1/health.proto; SERVING = 1.)
//
// Usage:
//   baq-health-probe --addr=127.0.0.1:7001 [--service=NAME] [--timeout=2s]
// Exit codes (as grpc-health-probe): 0 SERVING, 1 bad arguments,
// 2 connection failure, 3 RPC failure, 4 not SERVING.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace {

constexpr int kServing = 1;

struct Args {
  std::string addr;
  std::string service;
  double timeout_seconds = 2.0;
};

bool ParseArgs(int argc, char** argv, Args& args) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) == 0) a = a.substr(1);  // --addr and -addr both work.
    auto value = [&a](const char* prefix) {
      return a.substr(std::string(prefix).size());
    };
    if (a.rfind("-addr=", 0) == 0) {
      args.addr = value("-addr=");
    } else if (a.rfind("-service=", 0) == 0) {
      args.service = value("-service=");
    } else if (a.rfind("-timeout=", 0) == 0) {
      std::string t = value("-timeout=");
      if (!t.empty() && t.back() == 's') t.pop_back();
      char* end = nullptr;
      args.timeout_seconds = std::strtod(t.c_str(), &end);
      if (end == t.c_str() || *end != '\0' || args.timeout_seconds <= 0)
        return false;
    } else {
      return false;
    }
  }
  return !args.addr.empty();
}

std::string EncodeRequest(const std::string& service) {
  std::string out;
  if (service.empty()) return out;  // proto3: the default is not serialized.
  out.push_back(0x0a);              // field 1, wire type 2
  for (uint64_t n = service.size();; n >>= 7) {
    if (n < 0x80) {
      out.push_back(static_cast<char>(n));
      break;
    }
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
  }
  return out + service;
}

// The ServingStatus in `bytes`; 0 (UNKNOWN) when absent.
int DecodeStatus(const std::string& bytes) {
  size_t i = 0;
  auto varint = [&bytes, &i](uint64_t& v) {
    v = 0;
    for (int shift = 0; i < bytes.size() && shift < 64; shift += 7) {
      const uint8_t b = static_cast<uint8_t>(bytes[i++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  };
  int status = 0;
  while (i < bytes.size()) {
    uint64_t key = 0, v = 0;
    if (!varint(key)) return 0;
    switch (key & 7) {
      case 0:
        if (!varint(v)) return 0;
        if ((key >> 3) == 1) status = static_cast<int>(v);
        break;
      case 2:
        if (!varint(v) || v > bytes.size() - i) return 0;
        i += v;
        break;
      default:
        return 0;  // Health responses have no other wire types.
    }
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!ParseArgs(argc, argv, args)) {
    std::fprintf(stderr,
                 "usage: baq-health-probe --addr=HOST:PORT [--service=NAME] "
                 "[--timeout=2s]\n");
    return 1;
  }
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(
                            static_cast<int64_t>(args.timeout_seconds * 1e3));
  auto channel =
      grpc::CreateChannel(args.addr, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(deadline)) {
    std::fprintf(stderr, "baq-health-probe: cannot connect to %s\n",
                 args.addr.c_str());
    return 2;
  }

  const std::string request_bytes = EncodeRequest(args.service);
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline);
  grpc::GenericStub stub(channel);

  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request, &response, [&](grpc::Status s) {
                   std::lock_guard<std::mutex> lock(mu);
                   status = std::move(s);
                   done = true;
                   cv.notify_one();
                 });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
  }
  if (!status.ok()) {
    std::fprintf(stderr, "baq-health-probe: Check failed: %d %s\n",
                 static_cast<int>(status.error_code()),
                 status.error_message().c_str());
    return 3;
  }
  std::vector<grpc::Slice> slices;
  std::string response_bytes;
  if (response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      response_bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  const int serving_status = DecodeStatus(response_bytes);
  if (serving_status != kServing) {
    std::fprintf(stderr, "baq-health-probe: status %d (not SERVING)\n",
                 serving_status);
    return 4;
  }
  std::printf("status: SERVING\n");
  return 0;
}
