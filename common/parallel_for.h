// common/parallel_for.h
//
// ParallelFor runs a loop body over [0, n) on a few threads, for the CPU
// stages that common/ owns (code packing) and that cannot use LibTorch's
// at::parallel_for (common links no LibTorch). The caller picks the thread
// count (the worker passes at::get_num_threads(), so one setting governs both).
//
// The range is cut into chunks of `grain` items (the last may be shorter),
// handed out in order from a shared counter to the caller's thread and
// threads - 1 std::threads started for this call and joined before it
// returns. Which thread runs which chunk varies from run to run, so results
// are the same for any thread count exactly when each chunk writes only what
// it owns. Starting threads costs tens of microseconds: meant for loops of
// milliseconds or more.
//
// Thread-safe (no shared state); `fn` is called concurrently and must not
// throw.
//
// Example:
//   ParallelFor(columns, /*grain=*/64, threads, [&](int64_t begin, int64_t end) {
//     for (int64_t j = begin; j < end; ++j) PackColumn(j);
//   });
#ifndef BAQ_COMMON_PARALLEL_FOR_H_
#define BAQ_COMMON_PARALLEL_FOR_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace baq {

// REQUIRES: n >= 0, grain >= 1. threads <= 1 runs every chunk on the caller.
template <typename Fn>
void ParallelFor(int64_t n, int64_t grain, int threads, const Fn& fn) {
  const int64_t chunks = (n + grain - 1) / grain;
  const int64_t workers = std::min<int64_t>(std::max(threads, 1), chunks);
  if (workers <= 1) {
    for (int64_t begin = 0; begin < n; begin += grain) fn(begin, std::min(n, begin + grain));
    return;
  }
  std::atomic<int64_t> next{0};
  const auto run = [&] {
    for (int64_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1)) {
      fn(c * grain, std::min(n, (c + 1) * grain));
    }
  };
  std::vector<std::thread> helpers;
  helpers.reserve(static_cast<size_t>(workers - 1));
  for (int64_t i = 1; i < workers; ++i) helpers.emplace_back(run);
  run();
  for (std::thread& t : helpers) t.join();
}

}  // namespace baq

#endif  // BAQ_COMMON_PARALLEL_FOR_H_
