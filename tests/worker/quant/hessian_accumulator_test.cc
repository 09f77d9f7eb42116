#include "worker/quant/hessian_accumulator.h"

#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "absl/strings/escaping.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

constexpr double kOrderRtol = 1e-12;  // float64 sums of the same terms, any order

double MaxRelDiff(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

TEST(HessianAccumulatorTest, MatchesDirectFormula) {
  at::manual_seed(0);
  const at::Tensor a = at::randn({3, 5, 8}, at::kFloat);  // [batch, seq, cols]
  const at::Tensor b = at::randn({7, 8}, at::kHalf);
  HessianAccumulator acc(8);
  ASSERT_TRUE(acc.Add(a).ok());
  ASSERT_TRUE(acc.Add(b).ok());
  EXPECT_EQ(acc.rows(), 22);
  const at::Tensor x = at::cat({a.reshape({-1, 8}).to(at::kDouble), b.to(at::kDouble)});
  const at::Tensor expected = x.t().mm(x) * (2.0 / 22);
  auto h64 = acc.Finalize(at::kDouble);
  ASSERT_TRUE(h64.ok());
  EXPECT_EQ(h64->scalar_type(), at::kDouble);
  EXPECT_LT(MaxRelDiff(*h64, expected), 1e-14);
  auto h32 = acc.Finalize();
  ASSERT_TRUE(h32.ok());
  EXPECT_EQ(h32->scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(h32->to(at::kDouble), expected, 1e-6, 1e-7));
}

TEST(HessianAccumulatorTest, OrderAndSplitIndependentAcrossWorkers) {
  at::manual_seed(1);
  const at::Tensor x = at::randn({300, 16}, at::kFloat) * 10;
  // Worker view 1: one accumulator, tokens in order.
  HessianAccumulator one(16);
  ASSERT_TRUE(one.Add(x).ok());
  // Worker view 2: three workers with uneven, shuffled shards, merged through
  // the wire format in reverse order.
  const at::Tensor shuffled = x.index_select(0, at::randperm(300, at::kLong));
  std::vector<std::string> wire;
  for (auto [begin, len] : {std::pair<int64_t, int64_t>{0, 1}, {1, 200}, {201, 99}}) {
    HessianAccumulator part(16);
    ASSERT_TRUE(part.Add(shuffled.narrow(0, begin, len)).ok());
    wire.push_back(part.Serialize());
  }
  HessianAccumulator merged(16);
  for (auto it = wire.rbegin(); it != wire.rend(); ++it) {
    auto part = HessianAccumulator::Deserialize(*it);
    ASSERT_TRUE(part.ok()) << part.status();
    ASSERT_TRUE(merged.Merge(*part).ok());
  }
  EXPECT_EQ(merged.rows(), 300);
  EXPECT_LT(MaxRelDiff(*merged.Finalize(at::kDouble), *one.Finalize(at::kDouble)), kOrderRtol);
}

TEST(HessianAccumulatorTest, SerializeRoundTripIsExact) {
  at::manual_seed(2);
  HessianAccumulator acc(5);
  ASSERT_TRUE(acc.Add(at::randn({9, 5}, at::kDouble)).ok());
  const std::string bytes = acc.Serialize();
  EXPECT_EQ(bytes.size(), 4 + 4 + 8 + 8 + 25 * 8u);
  auto back = HessianAccumulator::Deserialize(bytes);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->rows(), 9);
  EXPECT_EQ(back->num_columns(), 5);
  EXPECT_TRUE(at::equal(back->sum(), acc.sum()));
}

TEST(HessianAccumulatorTest, SerializeWritesTheBaqhBytesRowMajor) {
  // One row x = [1, 2]: sum = x^T x = [[1, 2], [2, 4]], rows = 1, in the
  // format of common/hessian_format.h.
  HessianAccumulator acc(2);
  ASSERT_TRUE(acc.Add(at::tensor({1.0, 2.0}, at::kDouble).view({1, 2})).ok());
  EXPECT_EQ(absl::BytesToHexString(acc.Serialize()),
            "42415148" "01000000" "0200000000000000" "0100000000000000"
            "000000000000f03f" "0000000000000040" "0000000000000040" "0000000000001040");
}

TEST(HessianAccumulatorTest, UpperTriangleRoundTripFinalizesToTheSameBits) {
  at::manual_seed(3);
  HessianAccumulator acc(7);
  ASSERT_TRUE(acc.Add(at::randn({40, 7}, at::kFloat)).ok());
  const std::string bytes = acc.Serialize(HessianAccumulator::HessianLayout::kUpperTriangle);
  EXPECT_EQ(bytes.size(), 24 + 28 * 8u);
  auto back = HessianAccumulator::Deserialize(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->rows(), 40);
  EXPECT_TRUE(at::equal(back->sum().triu(), acc.sum().triu()));
  EXPECT_TRUE(at::equal(*back->Finalize(at::kFloat), *acc.Finalize(at::kFloat)));
  EXPECT_TRUE(at::equal(*back->Finalize(at::kDouble), *acc.Finalize(at::kDouble)));
}

TEST(HessianAccumulatorTest, FinalizeIsExactlySymmetricFromTheUpperTriangle) {
  // A sum whose lower triangle disagrees (as a tiled GEMM's may): Finalize
  // reads the upper one.
  HessianAccumulator acc(2);
  acc.mutable_sum().copy_(at::tensor({1.0, 2.0, -7.0, 4.0}, at::kDouble).view({2, 2}));
  acc.set_rows(2);
  absl::StatusOr<at::Tensor> h = acc.Finalize(at::kDouble);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(at::equal(*h, at::tensor({1.0, 2.0, 2.0, 4.0}, at::kDouble).view({2, 2})));
}

TEST(HessianAccumulatorTest, DeserializeRejectsMalformedBytes) {
  HessianAccumulator acc(3);
  ASSERT_TRUE(acc.Add(at::ones({2, 3})).ok());
  const std::string good = acc.Serialize();
  auto expect_invalid = [](const std::string& bytes, const std::string& what) {
    auto r = HessianAccumulator::Deserialize(bytes);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << what;
  };
  expect_invalid("", "empty");
  expect_invalid(good.substr(0, good.size() - 1), "truncated");
  expect_invalid(good + "x", "trailing byte");
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  expect_invalid(bad_magic, "magic");
  std::string bad_version = good;
  bad_version[4] = 9;
  expect_invalid(bad_version, "version");
  std::string huge_cols = good;
  huge_cols[15] = 0x7f;  // num_columns ~ 2^62: must not overflow the size check
  expect_invalid(huge_cols, "huge width");
  std::string nan = good;
  const double q = std::numeric_limits<double>::quiet_NaN();
  nan.replace(24, 8, reinterpret_cast<const char*>(&q), 8);
  expect_invalid(nan, "NaN payload");
  // The codec's message, prefixed with who was decoding.
  EXPECT_THAT(std::string(HessianAccumulator::Deserialize(nan).status().message()),
              HasSubstr("HessianAccumulator::Deserialize: Hessian sum has non-finite values "
                        "(1 NaN, 0 Inf; first at row 0, column 0)"));
}

TEST(HessianAccumulatorTest, RejectsBadActivations) {
  HessianAccumulator acc(8);
  EXPECT_EQ(acc.Add(at::zeros({2, 9})).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.Add(at::zeros({2, 8}, at::kInt)).code(), absl::StatusCode::kInvalidArgument);
  at::Tensor nan = at::zeros({2, 8});
  nan[1][3] = std::numeric_limits<float>::quiet_NaN();
  const absl::Status s = acc.Add(nan);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("activations"));
  EXPECT_EQ(acc.rows(), 0);
  EXPECT_TRUE(acc.Add(at::zeros({0, 8})).ok());
  EXPECT_EQ(acc.Finalize().status().code(), absl::StatusCode::kFailedPrecondition);
  HessianAccumulator other(4);
  EXPECT_EQ(acc.Merge(other).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(acc.Add(at::ones({1, 8})).ok());
  EXPECT_EQ(acc.Finalize(at::kHalf).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HessianAccumulatorTest, SameBitsForOneAndTwoThreads) {
  at::manual_seed(3);
  const at::Tensor x = at::randn({4096, 300}, at::kFloat);  // two column blocks
  at::Tensor sums[2];
  const int saved_threads = at::get_num_threads();
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    ASSERT_EQ(at::get_num_threads(), threads);
    HessianAccumulator acc(300);
    ASSERT_TRUE(acc.Add(x).ok());
    sums[threads - 1] = acc.sum().clone();
  }
  at::set_num_threads(saved_threads);
  EXPECT_TRUE(at::equal(sums[0], sums[1]));
}

}  // namespace
}  // namespace baq::worker
