// bench/allreduce_device_bench.cc
//
// AllReduceHessian (worker/communicator.h) across every visible GPU of this
// process through NCCL: the cost of merging one layer's float64 Hessian when a
// worker splits its calibration windows over its GPUs. Skips (prints why)
// without NCCL or with fewer than 2 GPUs.
//
//   allreduce_device_bench [--columns=4096,11008] [benchmark flags]
//
// Counters: reduces per iteration, bytes per reduce, world (bench/device/summarize.py
// turns them into ms per reduce and NCCL's bus bandwidth, 2 (world - 1) / world * bytes / t).
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "worker/communicator.h"
#include "worker/nccl/communicator_factory.h"
#include "worker/quant/hessian_accumulator.h"

namespace baq::worker {
namespace {

constexpr int kReducesPerIteration = 10;

void Register(std::vector<std::unique_ptr<Communicator>>* comms, int64_t cols,
              HessianReduction mode, const char* mode_name) {
  benchmark::RegisterBenchmark(
      absl::StrCat("AllReduceHessian/", mode_name, "/", cols, "/gpus:", comms->size()).c_str(),
      [comms, cols, mode](benchmark::State& state) {
        const int world = static_cast<int>(comms->size());
        std::vector<HessianAccumulator> accs;
        for (int r = 0; r < world; ++r) {
          accs.emplace_back(cols, at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(r)));
          accs[r].mutable_sum().normal_();
          accs[r].set_rows(1);
        }
        auto run = [&](int reduces) {
          std::vector<std::thread> threads;
          std::vector<absl::Status> status(world);
          for (int r = 0; r < world; ++r) {
            threads.emplace_back([&, r] {
              for (int i = 0; i < reduces && status[r].ok(); ++i) {
                status[r] = AllReduceHessian(accs[r], *(*comms)[r], absl::Minutes(1), mode);
              }
              if (status[r].ok()) (void)accs[r].sum().sum().item<double>();  // sync this GPU
            });
          }
          for (std::thread& t : threads) t.join();
          for (const absl::Status& s : status) {
            if (!s.ok()) return s;
          }
          return absl::OkStatus();
        };
        if (absl::Status s = run(2); !s.ok()) return state.SkipWithError(s.ToString().c_str());
        for (auto _ : state) {
          if (absl::Status s = run(kReducesPerIteration); !s.ok()) {
            return state.SkipWithError(s.ToString().c_str());
          }
        }
        const double bytes = static_cast<double>(cols) * cols * 8 *
                             (mode == HessianReduction::kRankOrdered ? world : 1);
        // Per reduce: real_time / reduces; busbw = 2 (world - 1) / world * bytes / that.
        state.counters["reduces"] = kReducesPerIteration;
        state.counters["bytes"] = bytes;
        state.counters["world"] = world;
      })
      ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);
}

}  // namespace
}  // namespace baq::worker

int main(int argc, char** argv) {
  using namespace baq::worker;
  std::string columns = "4096,11008";
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--columns=", 10) == 0) {
      columns = argv[i] + 10;
    } else {
      rest.push_back(argv[i]);
    }
  }
  const int gpus = NcclDeviceCount();
  std::cout << "NCCL backend: " << NcclBackendVersion() << ", GPUs: " << gpus << "\n";
  std::vector<std::unique_ptr<Communicator>> comms;
  if (HasNcclBackend() && gpus >= 2) {
    std::vector<c10::Device> devices;
    for (int i = 0; i < gpus; ++i) devices.emplace_back(at::kCUDA, static_cast<c10::DeviceIndex>(i));
    auto made = MakeDeviceCommunicators(devices, CommunicatorOptions{});
    if (!made.ok()) {
      std::cerr << "cannot create communicators: " << made.status() << "\n";
      return 1;
    }
    comms = *std::move(made);
    for (absl::string_view c : absl::StrSplit(columns, ',')) {
      int64_t cols = 0;
      if (!absl::SimpleAtoi(c, &cols)) {
        std::cerr << "bad --columns entry " << c << "\n";
        return 2;
      }
      Register(&comms, cols, HessianReduction::kBackend, "backend");
      Register(&comms, cols, HessianReduction::kRankOrdered, "rank_ordered");
    }
  } else {
    std::cout << "skipping: needs NCCL (BAQ_WITH_NCCL) and 2 or more GPUs\n";
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
