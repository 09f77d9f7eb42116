// common/python_random.h
//
// PythonRandom reproduces CPython's `random.Random` (MT19937) bit for bit for
// the calls the GPTQ reference code makes to draw calibration windows:
// `random.seed(seed)` with an int, then `random.randint(a, b)`. This lets
// baq draw exactly the windows the published numbers were computed on.
// CPython: Modules/_randommodule.c (init_by_array, genrand_uint32,
// getrandbits) and Lib/random.py (randint -> randrange -> _randbelow, which
// rejection-samples getrandbits(n.bit_length())).
//
// Thread-compatible (a value type with internal state).
//
// Example:
//   PythonRandom rng(/*seed=*/0);                  // random.seed(0)
//   int64_t i = rng.RandInt(0, total - 2048 - 1);  // random.randint(...)
#ifndef BAQ_COMMON_PYTHON_RANDOM_H_
#define BAQ_COMMON_PYTHON_RANDOM_H_

#include <array>
#include <cstdint>

namespace baq {

class PythonRandom {
 public:
  // random.seed(seed) for a non-negative int `seed` (CPython seeds with the
  // absolute value, so -seed gives the same stream).
  explicit PythonRandom(uint64_t seed);

  // random.getrandbits(32).
  uint32_t NextUint32();
  // random.getrandbits(k). REQUIRES: 0 <= k <= 64.
  uint64_t GetRandBits(int k);
  // random._randbelow(n): uniform in [0, n). REQUIRES: n > 0.
  uint64_t RandBelow(uint64_t n);
  // random.randint(a, b): uniform in [a, b]. REQUIRES: a <= b, b - a < 2^64
  // - 1.
  int64_t RandInt(int64_t a, int64_t b);
  // random.random(): uniform double in [0, 1) with 53 random bits.
  double Random();

 private:
  static constexpr int kN = 624;
  std::array<uint32_t, kN> mt_;
  int index_ = kN + 1;
};

}  // namespace baq

#endif  // BAQ_COMMON_PYTHON_RANDOM_H_
