// bench/bench_main.h
//
// The main() of our Google Benchmark binaries: run the benchmarks chosen by
// Google Benchmark's flags, then let the binary print its ratios against the
// baseline it ran in the same process. Header-only, since bench/ builds one
// binary per *_bench.cc (bench/CMakeLists.txt).
//
// Example:
//   int main(int argc, char** argv) { return baq::RunBenchmarks(argc, argv, PrintRatios); }
#ifndef BAQ_BENCH_BENCH_MAIN_H_
#define BAQ_BENCH_BENCH_MAIN_H_

#include <benchmark/benchmark.h>

namespace baq {

// Returns main()'s exit code: 1 on an unrecognized flag, else 0.
inline int RunBenchmarks(int argc, char** argv, void (*report)()) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  report();
  return 0;
}

}  // namespace baq

#endif  // BAQ_BENCH_BENCH_MAIN_H_
