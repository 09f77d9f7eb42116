#include "common/python_random.h"

#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baq {
namespace {

using ::testing::ElementsAreArray;

// Every expected number below is CPython 3.11 output (random module).

TEST(PythonRandomTest, Seed0Uint32Stream) {
  // random.seed(0); [random.getrandbits(32) for _ in range(5)]
  PythonRandom rng(0);
  std::vector<uint32_t> got;
  for (int i = 0; i < 5; ++i) got.push_back(rng.NextUint32());
  EXPECT_THAT(got, ElementsAreArray<uint32_t>(
                       {3626764237u, 1654615998u, 3255389356u, 3823568514u, 1806341205u}));
}

TEST(PythonRandomTest, GptqWindowStartsSeed0) {
  // random.seed(0); [random.randint(0, 1000000 - 2048 - 1) for _ in range(128)]
  const std::vector<int64_t> want = {
      885440, 403958, 794772, 933488, 441001, 42450,  271493, 536110, 509532, 424604, 962838,
      821872, 870163, 318046, 499748, 375441, 611720, 934973, 952225, 229053, 529202, 146039,
      295528, 146534, 792518, 99437,  648406, 838234, 262674, 953938, 558433, 739426, 849574,
      631140, 945989, 154100, 325213, 103560, 765284, 77324,  942500, 891786, 717209, 346236,
      495077, 587007, 105592, 370977, 455262, 331556, 640561, 671532, 957361, 214410, 579363,
      500181, 464197, 907343, 546678, 273145, 65304,  844132, 963080, 575352, 960489, 14723,
      97802,  754665, 880899, 418196, 744754, 864912, 823182, 700609, 655638, 1198,   641620,
      517553, 868287, 909747, 349317, 255759, 765752, 341001, 737822, 912755, 66043,  200348,
      961564, 595078, 232473, 250206, 842368, 149416, 842194, 569366, 469730, 95646,  84353,
      335601, 917595, 532614, 978147, 513054, 114355, 316089, 578045, 305230, 740883, 130873,
      574033, 348914, 854030, 967048, 566528, 213072, 838260, 632485, 573812, 616161, 301630,
      466604, 96083,  625252, 836695, 403598, 332447, 603613};
  PythonRandom rng(0);
  std::vector<int64_t> got;
  for (int i = 0; i < 128; ++i) got.push_back(rng.RandInt(0, 1000000 - 2048 - 1));
  EXPECT_THAT(got, ElementsAreArray(want));
}

TEST(PythonRandomTest, RandomDouble) {
  // random.seed(0); [random.random() for _ in range(3)]
  PythonRandom rng(0);
  EXPECT_EQ(rng.Random(), 0.8444218515250481);
  EXPECT_EQ(rng.Random(), 0.7579544029403025);
  EXPECT_EQ(rng.Random(), 0.420571580830845);
}

TEST(PythonRandomTest, MultiWordSeedAndWideDraws) {
  // random.seed(2**40 + 5); [random.getrandbits(64) for _ in range(3)]
  PythonRandom big((uint64_t{1} << 40) + 5);
  EXPECT_EQ(big.GetRandBits(64), 9535518150286577956ull);
  EXPECT_EQ(big.GetRandBits(64), 12244916861145399977ull);
  EXPECT_EQ(big.GetRandBits(64), 505956256775690464ull);

  // random.seed(1234); [random.randint(0, 3 * 2**40) for _ in range(4)]
  PythonRandom rng(1234);
  std::vector<int64_t> got;
  for (int i = 0; i < 4; ++i) got.push_back(rng.RandInt(0, 3 * (int64_t{1} << 40)));
  EXPECT_THAT(got,
              ElementsAreArray<int64_t>({512994040351, 395169166868, 152824503769, 3048016156050}));

  // random.seed(0); random.getrandbits(40), random.getrandbits(33),
  // random.getrandbits(1)
  PythonRandom bits(0);
  EXPECT_EQ(bits.GetRandBits(40), 424533559245u);
  EXPECT_EQ(bits.GetRandBits(33), 7550356652u);
  EXPECT_EQ(bits.GetRandBits(1), 0u);
}

TEST(PythonRandomTest, RejectionSamplingForSmallRanges) {
  // random.seed(7); [random.randint(0, 2) for _ in range(12)]
  PythonRandom rng(7);
  std::vector<int64_t> got;
  for (int i = 0; i < 12; ++i) got.push_back(rng.RandInt(0, 2));
  EXPECT_THAT(got, ElementsAreArray<int64_t>({1, 0, 1, 2, 0, 0, 2, 0, 1, 2, 0, 2}));
  PythonRandom one(0);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(one.RandInt(5, 5), 5);
  EXPECT_EQ(one.GetRandBits(0), 0u);
}

}  // namespace
}  // namespace baq
