#include "common/parallel_for.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace baq {
namespace {

// Every index in [0, n) is visited exactly once, in chunks of `grain` that
// start at multiples of it, for any thread count.
TEST(ParallelForTest, CoversTheRangeOnceInGrainAlignedChunks) {
  for (int64_t n : {0, 1, 7, 64, 1000}) {
    for (int64_t grain : {1, 3, 64, 5000}) {
      for (int threads : {0, 1, 2, 5, 16}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::mutex mu;
        std::vector<std::pair<int64_t, int64_t>> chunks;
        ParallelFor(n, grain, threads, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
          std::lock_guard<std::mutex> lock(mu);
          chunks.emplace_back(begin, end);
        });
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[i].load(), 1) << n << " " << grain << " " << threads << " at " << i;
        }
        for (const auto& [begin, end] : chunks) {
          EXPECT_EQ(begin % grain, 0);
          EXPECT_EQ(end, std::min(n, begin + grain));
        }
      }
    }
  }
}

TEST(ParallelForTest, OneThreadRunsOnTheCaller) {
  const std::thread::id caller = std::this_thread::get_id();
  std::set<std::thread::id> seen;
  ParallelFor(100, 1, 1, [&](int64_t, int64_t) { seen.insert(std::this_thread::get_id()); });
  EXPECT_EQ(seen, std::set<std::thread::id>{caller});
}

TEST(ParallelForTest, UsesAtMostTheThreadsAskedFor) {
  std::mutex mu;
  std::set<std::thread::id> seen;
  ParallelFor(1000, 1, 3, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mu);
    seen.insert(std::this_thread::get_id());
  });
  EXPECT_LE(seen.size(), 3u);
  EXPECT_GE(seen.size(), 1u);
}

}  // namespace
}  // namespace baq
