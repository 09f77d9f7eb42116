// coordinator/calibration_shards: the fp64 merge of Hessian partials (exact
// additions in shard order, every inconsistency named by its sender), the
// checkpoint framing of shard inputs, and ShardedBlock's dealing of shards
// over engines, its consistency check and its failure attribution, against
// scripted fake engines.
#include "coordinator/calibration_shards.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/engine_capabilities.h"

namespace baq::coordinator {
namespace {

using ::testing::HasSubstr;

// HessianAccumulator's wire format: "BAQH", u32 1, i64 columns, i64 rows, sum.
std::string Sum(int64_t columns, int64_t rows, const std::vector<double>& values) {
  std::string out("BAQH", 4);
  const uint32_t version = 1;
  out.append(reinterpret_cast<const char*>(&version), 4);
  out.append(reinterpret_cast<const char*>(&columns), 8);
  out.append(reinterpret_cast<const char*>(&rows), 8);
  out.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(double));
  return out;
}

std::vector<double> Values(const std::string& bytes) {
  std::vector<double> v((bytes.size() - 24) / 8);
  std::memcpy(v.data(), bytes.data() + 24, v.size() * 8);
  return v;
}

int64_t Rows(const std::string& bytes) {
  int64_t rows;
  std::memcpy(&rows, bytes.data() + 16, 8);
  return rows;
}

HessianPartial Partial(int shard, int group, std::string bytes) {
  return HessianPartial{shard, group, absl::StrCat("layer", group), std::move(bytes)};
}

TEST(MergeHessianPartialsTest, AddsInShardOrderExactly) {
  // Values where the order of float64 additions changes the result:
  // (1 + 1e16) - 1e16 = 0, but 1 + (1e16 - 1e16) = 1.
  const std::vector<double> a = {1.0, 0.5, 3.0, -2.0};
  const std::vector<double> b = {1e16, 0.25, 1e-17, 7.0};
  const std::vector<double> c = {-1e16, 0.125, 1.0, 1e300};
  std::vector<ShardPartials> shards = {
      {"w0", {Partial(0, 0, Sum(2, 10, a)), Partial(0, 3, Sum(1, 10, {a[0]}))}},
      {"w1", {Partial(1, 0, Sum(2, 7, b)), Partial(1, 3, Sum(1, 7, {b[0]}))}},
      {"w2", {Partial(2, 0, Sum(2, 5, c)), Partial(2, 3, Sum(1, 5, {c[0]}))}}};
  absl::StatusOr<std::vector<HessianPartial>> merged = MergeHessianPartials(4, shards);
  ASSERT_TRUE(merged.ok()) << merged.status();
  ASSERT_EQ(merged->size(), 2u);
  std::vector<double> want(4);
  for (int i = 0; i < 4; ++i) want[i] = (a[i] + b[i]) + c[i];
  ASSERT_EQ(want[0], 0.0);
  EXPECT_EQ(Values((*merged)[0].bytes), want);  // Bit-exact doubles.
  EXPECT_EQ(Values((*merged)[1].bytes), std::vector<double>{(a[0] + b[0]) + c[0]});
  EXPECT_EQ(Rows((*merged)[0].bytes), 22);
  EXPECT_EQ((*merged)[0].shard, -1);
  EXPECT_EQ((*merged)[1].input_group, 3);
  EXPECT_EQ((*merged)[1].layer, "layer3");
}

TEST(HessianMergerTest, EarlyShardsWaitForTheirTurn) {
  // Shards arriving 2, 0, 1 (two engines: 0 and 2 from one) sum as 0 + 1 + 2.
  const std::vector<double> a = {1.0}, b = {1e16}, c = {-1e16};
  HessianMerger merger(0, 3);
  ASSERT_TRUE(merger.Add(2, {"w0", {Partial(2, 0, Sum(1, 1, c))}}).ok());
  ASSERT_TRUE(merger.Add(0, {"w0", {Partial(0, 0, Sum(1, 1, a))}}).ok());
  EXPECT_EQ(merger.Add(0, {"w0", {Partial(0, 0, Sum(1, 1, a))}}).code(),
            absl::StatusCode::kInvalidArgument);  // Twice.
  ASSERT_TRUE(merger.Add(1, {"w1", {Partial(1, 0, Sum(1, 1, b))}}).ok());
  absl::StatusOr<std::vector<HessianPartial>> merged = std::move(merger).Finish();
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(Values((*merged)[0].bytes), std::vector<double>{(a[0] + b[0]) + c[0]});
  EXPECT_EQ(Rows((*merged)[0].bytes), 3);

  HessianMerger missing(0, 2);
  ASSERT_TRUE(missing.Add(1, {"w1", {Partial(1, 0, Sum(1, 1, b))}}).ok());
  EXPECT_THAT(std::move(missing).Finish().status().message(), HasSubstr("0 of 2 shards"));
}

TEST(MergeHessianPartialsTest, NamesTheSenderOfInconsistentPartials) {
  auto three = [] {
    return std::vector<ShardPartials>{
        {"worker a device 0", {Partial(0, 0, Sum(2, 4, {1, 2, 3, 4}))}},
        {"worker b device 0", {Partial(1, 0, Sum(2, 4, {1, 2, 3, 4}))}},
        {"worker c device 0", {Partial(2, 0, Sum(2, 4, {1, 2, 3, 4}))}}};
  };
  std::vector<ShardPartials> s = three();
  s[1].partials.push_back(Partial(1, 1, Sum(2, 4, {1, 2, 3, 4})));  // A group too many.
  absl::StatusOr<std::vector<HessianPartial>> r = MergeHessianPartials(2, s);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("worker b device 0 sent 2 Hessian partial(s) for shard 1"));

  s = three();
  s[2].partials[0].bytes = Sum(1, 4, {1});  // Another width.
  r = MergeHessianPartials(2, s);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("worker c device 0 sent shard 2"));
  EXPECT_THAT(r.status().message(), HasSubstr("1 columns"));

  s = three();
  s[1].partials[0].bytes.resize(30);  // Truncated.
  r = MergeHessianPartials(2, s);
  EXPECT_THAT(r.status().message(), HasSubstr("worker b device 0"));
  EXPECT_THAT(r.status().message(), HasSubstr("30 bytes"));

  s = three();
  s[0].partials[0].bytes[0] = 'X';  // Not a Hessian sum.
  r = MergeHessianPartials(2, s);
  EXPECT_THAT(r.status().message(), HasSubstr("worker a device 0"));
  EXPECT_THAT(r.status().message(), HasSubstr("not a Hessian sum"));

  s = three();
  s[2].partials[0].shard = 1;  // Mislabelled.
  r = MergeHessianPartials(2, s);
  EXPECT_THAT(r.status().message(), HasSubstr("labelled shard 1"));

  s = three();  // Groups of one shard disagree on the token count.
  s[1].partials.push_back(Partial(1, 1, Sum(1, 5, {1})));
  for (int k : {0, 2}) s[k].partials.push_back(Partial(k, 1, Sum(1, 4, {1})));
  r = MergeHessianPartials(2, s);
  EXPECT_THAT(r.status().message(), HasSubstr("worker b device 0"));
  EXPECT_THAT(r.status().message(), HasSubstr("token rows"));

  EXPECT_FALSE(MergeHessianPartials(2, {}).ok());
}

TEST(ShardInputsTest, PackUnpackRoundTripAndErrors) {
  const std::vector<std::string> parts = {"abc", "", std::string(1000, 'x')};
  const std::string blob = PackShardInputs(parts);
  absl::StatusOr<std::vector<std::string>> back = UnpackShardInputs(blob, 3);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, parts);
  EXPECT_THAT(UnpackShardInputs(blob, 2).status().message(), HasSubstr("3 shards, the job has 2"));
  EXPECT_FALSE(UnpackShardInputs(blob.substr(0, blob.size() - 1), 3).ok());
  EXPECT_FALSE(UnpackShardInputs(blob + "x", 3).ok());
  EXPECT_FALSE(UnpackShardInputs("", 3).ok());
}

// A scripted engine: one input group of 2 columns; shard k's partial is the
// matrix filled with k + 1, over k + 10 rows.
class FakeShardEngine final : public BlockEngine, public ShardedCalibration {
 public:
  explicit FakeShardEngine(std::string name) : name_(std::move(name)) {}
  std::string name() const override { return name_; }
  ShardedCalibration* sharded_calibration() override { return this; }
  void Cancel() override {}
  absl::Status Start(const JobConfig&) override { return absl::OkStatus(); }
  int64_t num_blocks() const override { return 2; }
  absl::StatusOr<BlockMeasurement> Measure(int64_t block) override {
    BlockMeasurement m;
    m.block = block;
    m.layers.push_back(LayerMeasurement{"layer0", 2, {1.0, 2.0}, {}});
    return m;
  }
  absl::StatusOr<BlockOutput> Quantize(int64_t block, const std::vector<LayerAllocation>&) override {
    BlockOutput out;
    out.block = block;
    out.tensors.push_back(TensorBytes{"w", DType::kF32, {1}, output_bytes});
    out.tensor_format.push_back(0);
    return out;
  }
  void Reset() override {}

  absl::StatusOr<std::vector<HessianPartial>> AccumulateHessians(
      int64_t, const std::vector<int32_t>& shards) override {
    if (!accumulate_error.ok()) return accumulate_error;
    accumulated.push_back(shards);
    std::vector<HessianPartial> out;
    for (int32_t k : shards) {
      const double v = k + 1;
      out.push_back(Partial(k, 0, Sum(width, k + 10, std::vector<double>(width * width, v))));
    }
    return out;
  }
  absl::Status ImportHessians(int64_t, std::vector<HessianPartial> merged) override {
    imported = std::move(merged);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExportShardInputs(int64_t block, int32_t shard) override {
    return absl::FailedPreconditionError(
        absl::StrCat("block ", block, ": inputs of calibration shard ", shard, " not present"));
  }
  absl::Status ImportShardInputs(int64_t, int32_t, std::string) override {
    return absl::OkStatus();
  }

  std::string name_;
  int64_t width = 2;
  absl::Status accumulate_error;
  std::string output_bytes = "same";
  std::vector<std::vector<int32_t>> accumulated;
  std::vector<HessianPartial> imported;
};

TEST(ShardedBlockTest, DealsShardsAndImportsTheMergedSumEverywhere) {
  FakeShardEngine a("a"), b("b");
  ShardedBlock run(3);
  run.Assign({&a, &b});
  absl::StatusOr<BlockMeasurement> m = run.Measure(0);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(a.accumulated, (std::vector<std::vector<int32_t>>{{0, 2}}));
  EXPECT_EQ(b.accumulated, (std::vector<std::vector<int32_t>>{{1}}));
  for (FakeShardEngine* e : {&a, &b}) {
    ASSERT_EQ(e->imported.size(), 1u);
    EXPECT_EQ(Values(e->imported[0].bytes), std::vector<double>(4, 1.0 + 2.0 + 3.0));
    EXPECT_EQ(Rows(e->imported[0].bytes), 10 + 11 + 12);
  }
  absl::StatusOr<BlockOutput> out = run.Quantize(0, {});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->tensors[0].bytes, "same");
}

TEST(ShardedBlockTest, MoreEnginesThanShardsUsesTheFirst) {
  FakeShardEngine a("a"), b("b"), c("c");
  ShardedBlock run(2);
  run.Assign({&a, &b, &c});
  ASSERT_TRUE(run.Measure(0).ok());
  EXPECT_TRUE(c.accumulated.empty());
  EXPECT_TRUE(c.imported.empty());
}

TEST(ShardedBlockTest, NoEngineIsAnError) {
  ShardedBlock run(2);
  run.Assign({});
  EXPECT_EQ(run.Measure(0).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(run.ExportInputs(1).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ShardedBlockTest, NamesTheEngineAtFault) {
  FakeShardEngine a("worker a device 0"), b("worker b device 0");
  ShardedBlock run(2);
  run.Assign({&a, &b});
  b.width = 3;  // Its partial does not fit shard 0's.
  absl::StatusOr<BlockMeasurement> m = run.Measure(0);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("worker b device 0"));
  EXPECT_EQ(run.failed(), nullptr);  // Not a failed call: the job fails.

  b.width = 2;
  b.accumulate_error = absl::UnavailableError("connection refused");
  m = run.Measure(0);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(run.failed(), &b);  // The runner drops b and re-plans.

  b.accumulate_error = absl::OkStatus();
  b.output_bytes = "different";
  ASSERT_TRUE(run.Measure(0).ok());
  absl::StatusOr<BlockOutput> out = run.Quantize(0, {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(out.status().message(), HasSubstr("worker b device 0 quantized the block differently"));
}

}  // namespace
}  // namespace baq::coordinator
