// baq-worker: the worker daemon. Parses flags, wires the LibTorch engine
// factory, the gRPC server, the coordinator link and the metrics endpoint,
// then waits for SIGTERM/SIGINT and shuts down in order (STYLE R1, R18).
#include <prometheus/registry.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/trace_recorder.h"
#include "daemon/daemon.h"
#include "daemon/daemon_flags.h"
#include "net/tls_credentials.h"
#include "worker/service/coordinator_link.h"
#include "worker/service/gpu_collector.h"
#include "worker/service/worker_metrics.h"
#include "worker/service/worker_server.h"
#include "worker/torch/trace_cuda_sync.h"
#include "worker/torch_block_engine.h"

ABSL_FLAG(std::string, coordinator, "", "Coordinator gRPC address, HOST:PORT (required).");
ABSL_FLAG(std::string, listen, "0.0.0.0:7001", "gRPC address to serve on, HOST:PORT.");
ABSL_FLAG(std::string, advertise, "",
          "HOST:PORT the coordinator dials; default: --listen with its bound port, and this "
          "host's name if it listens on a wildcard address.");
ABSL_FLAG(std::vector<std::string>, devices, {"cpu"},
          "Devices to serve, one executor thread each: cpu or cuda:N, comma-separated; "
          "cuda:0+cuda:1 is one executor spanning both GPUs (calibration split, Hessians "
          "all-reduced over NCCL).");
ABSL_FLAG(bool, async_shard_checkpoints, true,
          "Write shard checkpoints (resident data path) on a background thread while the job "
          "goes on; the coordinator falls back to the checkpoint before when a lost worker's "
          "newest file is incomplete. false: each checkpoint is on disk before the call returns.");
ABSL_FLAG(int, hessian_partials, 0,
          "Hessian partial sums per executor (0: one per device of the executor); output bits "
          "depend on it, not on the device count.");
ABSL_FLAG(std::string, metrics_listen, "",
          "Prometheus /metrics address, HOST:PORT; empty: no metrics endpoint.");
ABSL_FLAG(std::string, nvml_library, "libnvidia-ml.so.1",
          "NVML library loaded (dlopen) for the GPU memory and utilization metrics of the cuda "
          "devices; empty: no GPU metrics. Missing: the worker runs without them.");
ABSL_FLAG(int, threads, 0, "LibTorch intra-op threads for CPU work; 0: LibTorch's default.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Minutes(10),
          "On SIGTERM, how long in-flight RPCs may run before they are cancelled.");
ABSL_FLAG(std::string, trace_file, "",
          "Write a timeline of the work done (Chrome trace JSON: RPCs, block weight loads, "
          "calibration forwards, Hessians, quantization, activation moves) to this file at "
          "shutdown; empty: no trace.");
ABSL_FLAG(bool, trace_cuda_sync, false,
          "With --trace_file on CUDA devices: end every span with a device synchronize, so "
          "spans show device time per stage (slows the work).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate this worker serves (and presents to the coordinator); empty: "
          "plaintext.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle: verifies the coordinator, and callers must present a certificate it "
          "signed (mutual TLS).");

namespace {

constexpr char kUsage[] = R"(serves one host's devices to a baq coordinator.

Usage: baq-worker --coordinator=HOST:PORT [--listen=HOST:PORT] [--devices=cpu|cuda:0,...]
                  [--metrics_listen=HOST:PORT] [--threads=N]

Examples:
  # A CPU worker next to a local coordinator:
  baq-worker --coordinator=127.0.0.1:7000 --listen=127.0.0.1:7001 --devices=cpu --threads=8
  # Two GPUs, reachable from other hosts, with metrics:
  baq-worker --coordinator=coord.example:7000 --listen=0.0.0.0:7001 \
      --advertise=gpu-host-3.example:7001 --devices=cuda:0,cuda:1 --metrics_listen=0.0.0.0:9401

SIGTERM or SIGINT: stop heartbeating, finish the RPCs in flight (up to --shutdown_grace),
free the engines, exit 0.)";

std::string AdvertiseAddress(const std::string& listen, int port) {
  if (!absl::GetFlag(FLAGS_advertise).empty()) return absl::GetFlag(FLAGS_advertise);
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") {
    char name[256] = {};
    host = gethostname(name, sizeof(name) - 1) == 0 ? name : "localhost";
  }
  return absl::StrCat(host, ":", port);
}

int64_t HostMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<int64_t>(pages) * page_size : 0;
}

}  // namespace

int main(int argc, char** argv) {
  baq::daemon::ParseDaemonCommandLine(argc, argv, kUsage, "worker/main.cc");
  const std::string coordinator = absl::GetFlag(FLAGS_coordinator);
  if (coordinator.empty()) {
    std::cerr << "baq-worker: --coordinator is required (see --help)\n";
    return 2;
  }
  baq::daemon::StopSignals stop_signals;  // Before any thread starts.
  if (absl::GetFlag(FLAGS_trace_cuda_sync)) {
    if (absl::Status s = baq::worker::SyncCudaAtTraceSpanEnds(); !s.ok()) {
      std::cerr << "baq-worker: " << s << "\n";
      return 2;
    }
  }

  auto registry = std::make_shared<prometheus::Registry>();
  baq::worker::WorkerMetrics metrics(*registry);
  // The worker keeps going without metrics: ../shared/DEVICE.md records the
  // Exposer failing in a process with CUDA LibTorch loaded, and a GPU worker
  // that crash-loops over its metrics endpoint serves nothing.
  auto exposer =
      baq::daemon::StartMetricsEndpointIfSet(absl::GetFlag(FLAGS_metrics_listen), registry);
  if (!exposer.ok()) {
    std::cerr << "baq-worker: ERROR: " << exposer.status() << "; continuing without /metrics\n";
  } else if (*exposer != nullptr) {
    baq::worker::GpuCollectorOptions gpu_options;
    gpu_options.devices = absl::GetFlag(FLAGS_devices);
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    gpu_options.cuda_visible_devices = visible != nullptr ? visible : "";
    gpu_options.nvml_library = absl::GetFlag(FLAGS_nvml_library);
    auto gpus = std::make_shared<baq::worker::GpuCollector>(gpu_options);
    if (!gpus->status().ok()) {
      std::cerr << "baq-worker: WARNING: GPU metrics: " << gpus->status() << "\n";
    }
    (*exposer)->Add(std::move(gpus));
  }

  const baq::net::TlsOptions tls{absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                                 absl::GetFlag(FLAGS_tls_ca)};
  auto coordinator_credentials = baq::net::MakeChannelCredentials(tls);
  if (!coordinator_credentials.ok()) {
    std::cerr << "baq-worker: " << coordinator_credentials.status() << "\n";
    return 2;
  }
  if (!tls.enabled()) {
    std::cerr << "baq-worker: WARNING: no --tls_cert: plaintext gRPC to and from the "
                 "coordinator; use only on a trusted network\n";
  }

  baq::worker::WorkerServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.devices = absl::GetFlag(FLAGS_devices);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  options.tls = tls;
  const int threads = absl::GetFlag(FLAGS_threads);
  const int hessian_partials = absl::GetFlag(FLAGS_hessian_partials);
  baq::worker::WorkerDeps deps;
  deps.metrics = &metrics;
  const bool async_checkpoints = absl::GetFlag(FLAGS_async_shard_checkpoints);
  deps.engine_factory = [threads, hessian_partials,
                         async_checkpoints](const std::string& device) {
    baq::worker::EngineOptions engine;
    engine.device = device;
    engine.num_threads = threads;
    engine.hessian_partials = hessian_partials;
    engine.async_shard_checkpoints = async_checkpoints;
    return baq::worker::MakeTorchBlockEngine(engine);
  };
  // Fail fast on a device this build or machine cannot serve.
  for (const std::string& device : options.devices) {
    if (auto probe = deps.engine_factory(device); !probe.ok()) {
      std::cerr << "baq-worker: device " << device << ": " << probe.status() << "\n";
      return 2;
    }
  }
  auto server = baq::worker::WorkerServer::Start(options, std::move(deps));
  if (!server.ok()) {
    std::cerr << "baq-worker: " << server.status() << "\n";
    return 1;
  }

  baq::worker::CoordinatorLinkOptions link_options;
  link_options.coordinator_address = coordinator;
  link_options.advertise_address = AdvertiseAddress(options.listen_address, (*server)->port());
  // Before the link registers: no job can reach this worker earlier.
  const std::string trace_file = absl::GetFlag(FLAGS_trace_file);
  baq::trace::StartGlobalTrace(trace_file, absl::StrCat("worker ", link_options.advertise_address));
  link_options.devices = options.devices;
  link_options.memory_bytes = HostMemoryBytes();
  link_options.channel_credentials = *coordinator_credentials;
  auto link = baq::worker::CoordinatorLink::Start(link_options);
  std::cerr << "baq-worker: serving " << absl::StrJoin(options.devices, ",") << " on port "
            << (*server)->port() << " (" << baq::net::DescribeServerSecurity(tls)
            << "), coordinator " << coordinator << "\n";

  const int signal = stop_signals.Wait();
  std::cerr << "baq-worker: signal " << signal << ", shutting down\n";
  link->Stop();           // No more heartbeats: the coordinator's lease lapses.
  (*server)->Shutdown();  // NOT_SERVING, drain RPCs, stop executors, free engines.
  if (absl::Status s = baq::trace::FinishGlobalTrace(trace_file); !s.ok()) {
    std::cerr << "baq-worker: " << s << "\n";
  }
  return 0;
}
