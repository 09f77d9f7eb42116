// proto/convert: every field of the wire messages survives a round trip,
// proto3 zero values become JobConfig's defaults, status codes map 1:1, and
// bad input (unknown enum values, inconsistent tensor headers) is rejected
// with a message naming it.
#include "proto/convert.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace baq {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Every field away from its default.
JobConfig FullConfig() {
  JobConfig c;
  c.model_dir = "/models/opt-125m";
  c.output_dir = "/out/job-1";
  c.formats = {OutputFormat::kPacked, OutputFormat::kGptq, OutputFormat::kFakeQuant,
               OutputFormat::kCompressedTensors};
  c.calibration.files = {"a.txt", "b.txt"};
  c.calibration.num_samples = 16;
  c.calibration.seqlen = 512;
  c.calibration.seed = 42;
  c.quant.method = QuantMethod::kGptq;
  c.quant.target_bits = 2.75;
  c.quant.symmetric = true;
  c.quant.group_size = 64;
  c.quant.act_order = true;
  c.quant.static_groups = true;
  c.quant.percdamp = 0.05;
  c.quant.block_size = 32;
  c.quant.allocation_scope = AllocationScope::kGlobalRaw;
  c.quant.theta = 1.5;
  c.quant.max_levels = 64;
  c.mode = ExecutionMode::kParallel;
  c.eval_file = "eval.txt";
  c.eval_gate.text_file = "gate.txt";
  c.eval_gate.seqlen = 1024;
  c.eval_gate.max_ppl_ratio = 1.1;
  c.calibration_shards = 3;
  c.extra_target_bits = {3.0, 4.0};
  c.measurement_dir = "opt-measure";
  c.quantize_projections = true;  // Rejected by Validate(), but carried faithfully.
  c.max_shard_bytes = 1'000'000;
  c.forward_dtype = ForwardDtype::kBFloat16;
  return c;
}

void ExpectSameConfig(const JobConfig& a, const JobConfig& b) {
  EXPECT_EQ(a.model_dir, b.model_dir);
  EXPECT_EQ(a.output_dir, b.output_dir);
  EXPECT_EQ(a.formats, b.formats);
  EXPECT_EQ(a.calibration.files, b.calibration.files);
  EXPECT_EQ(a.calibration.num_samples, b.calibration.num_samples);
  EXPECT_EQ(a.calibration.seqlen, b.calibration.seqlen);
  EXPECT_EQ(a.calibration.seed, b.calibration.seed);
  EXPECT_EQ(a.quant.method, b.quant.method);
  EXPECT_EQ(a.quant.target_bits, b.quant.target_bits);
  EXPECT_EQ(a.quant.symmetric, b.quant.symmetric);
  EXPECT_EQ(a.quant.group_size, b.quant.group_size);
  EXPECT_EQ(a.quant.act_order, b.quant.act_order);
  EXPECT_EQ(a.quant.static_groups, b.quant.static_groups);
  EXPECT_EQ(a.quant.percdamp, b.quant.percdamp);
  EXPECT_EQ(a.quant.block_size, b.quant.block_size);
  EXPECT_EQ(a.quant.allocation_scope, b.quant.allocation_scope);
  EXPECT_EQ(a.quant.theta, b.quant.theta);
  EXPECT_EQ(a.quant.max_levels, b.quant.max_levels);
  EXPECT_EQ(a.quant.candidate_bits, b.quant.candidate_bits);
  EXPECT_EQ(a.mode, b.mode);
  EXPECT_EQ(a.eval_file, b.eval_file);
  EXPECT_EQ(a.eval_gate.text_file, b.eval_gate.text_file);
  EXPECT_EQ(a.eval_gate.seqlen, b.eval_gate.seqlen);
  EXPECT_EQ(a.eval_gate.max_ppl, b.eval_gate.max_ppl);
  EXPECT_EQ(a.eval_gate.max_ppl_ratio, b.eval_gate.max_ppl_ratio);
  EXPECT_EQ(a.calibration_shards, b.calibration_shards);
  EXPECT_EQ(a.extra_target_bits, b.extra_target_bits);
  EXPECT_EQ(a.measurement_dir, b.measurement_dir);
  EXPECT_EQ(a.quantize_projections, b.quantize_projections);
  EXPECT_EQ(a.max_shard_bytes, b.max_shard_bytes);
  EXPECT_EQ(a.forward_dtype, b.forward_dtype);
}

absl::StatusOr<JobConfig> RoundTrip(const JobConfig& c) {
  v1::JobSpec spec;
  ToProto(c, &spec);
  return FromProto(spec);
}

TEST(ConvertStatusTest, EveryCodeAndMessageMapsBothWays) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
  for (int code = 1; code <= 16; ++code) {
    const absl::Status s(static_cast<absl::StatusCode>(code), "msg");
    const grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    EXPECT_EQ(g.error_message(), "msg");
    EXPECT_EQ(FromGrpcStatus(g), s);
  }
  EXPECT_EQ(ToGrpcStatus(absl::UnavailableError("down")).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "late")).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(ConvertJobSpecTest, EveryFieldRoundTrips) {
  const JobConfig c = FullConfig();
  absl::StatusOr<JobConfig> back = RoundTrip(c);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameConfig(*back, c);
  // The other allocation scope and the absolute perplexity limit too.
  JobConfig d = c;
  d.quant.allocation_scope = AllocationScope::kSublayer;
  d.quant.method = QuantMethod::kRtn;
  d.eval_gate.max_ppl = 30;
  d.eval_gate.max_ppl_ratio = 0;
  back = RoundTrip(d);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameConfig(*back, d);
  // Module allocation and its candidate widths.
  JobConfig e = c;
  e.quant.allocation_scope = AllocationScope::kModule;
  e.quant.candidate_bits = {2, 4};
  back = RoundTrip(e);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameConfig(*back, e);
}

TEST(ConvertJobSpecTest, ZeroValuesMeanDefaults) {
  absl::StatusOr<JobConfig> got = FromProto(v1::JobSpec());
  ASSERT_TRUE(got.ok()) << got.status();
  JobConfig defaults;
  // Unset: one calibration shard per worker the job starts on.
  defaults.calibration_shards = 0;
  ExpectSameConfig(*got, defaults);
  EXPECT_THAT(got->formats, ElementsAre(OutputFormat::kFakeQuant));
  EXPECT_EQ(got->quant.group_size, -1);  // 0 on the wire: one grid per row.
  EXPECT_FALSE(got->eval_gate.enabled());
}

TEST(ConvertJobSpecTest, DefaultConfigRoundTrips) {
  absl::StatusOr<JobConfig> back = RoundTrip(JobConfig());
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameConfig(*back, JobConfig());
}

TEST(ConvertJobSpecTest, EqualLossFormIsThetaTwoUnlessThetaIsGiven) {
  v1::JobSpec spec;
  spec.mutable_quantization()->set_allocation_form(v1::ALLOCATION_FORM_EQUAL_LOSS);
  absl::StatusOr<JobConfig> got = FromProto(spec);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->quant.theta, 2.0);
  spec.mutable_quantization()->set_theta(1.7);
  got = FromProto(spec);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->quant.theta, 1.7);
}

TEST(ConvertJobSpecTest, EvalGateSeqlenDefaultsWhenTheGateIsSet) {
  v1::JobSpec spec;
  spec.mutable_eval_gate()->set_text_file("gate.txt");
  spec.mutable_eval_gate()->set_max_ppl(12.5);
  absl::StatusOr<JobConfig> got = FromProto(spec);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->eval_gate.enabled());
  EXPECT_EQ(got->eval_gate.seqlen, JobConfig().eval_gate.seqlen);
  EXPECT_EQ(got->eval_gate.max_ppl, 12.5);
}

TEST(ConvertJobSpecTest, ToProtoReplacesTheWholeSpec) {
  v1::JobSpec spec;
  spec.set_priority(7);
  spec.set_tenant("t");
  spec.add_formats(v1::OUTPUT_FORMAT_GPTQ);
  ToProto(JobConfig(), &spec);
  EXPECT_EQ(spec.priority(), 0);
  EXPECT_EQ(spec.tenant(), "");
  EXPECT_THAT(spec.formats(), ElementsAre(v1::OUTPUT_FORMAT_FAKE_QUANT));
  EXPECT_FALSE(spec.has_eval_gate());  // A disabled gate is not sent.
}

TEST(ConvertJobSpecTest, RejectsUnknownEnumValuesNamingThem) {
  auto message = [](const v1::JobSpec& spec) {
    absl::StatusOr<JobConfig> got = FromProto(spec);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(got.status().message());
  };
  v1::JobSpec spec;
  spec.mutable_quantization()->set_method(static_cast<v1::Method>(99));
  EXPECT_THAT(message(spec), HasSubstr("unknown method 99"));
  spec.Clear();
  spec.add_formats(v1::OUTPUT_FORMAT_PACKED);
  spec.add_formats(static_cast<v1::OutputFormat>(9));
  EXPECT_THAT(message(spec), HasSubstr("unknown output format 9"));
  spec.Clear();
  spec.add_formats(v1::OUTPUT_FORMAT_UNSPECIFIED);  // Listed formats must be real ones.
  EXPECT_THAT(message(spec), HasSubstr("unknown output format 0"));
  spec.Clear();
  spec.set_mode(static_cast<v1::ExecutionMode>(5));
  EXPECT_THAT(message(spec), HasSubstr("unknown execution mode 5"));
  spec.Clear();
  spec.mutable_quantization()->set_allocation_scope(static_cast<v1::AllocationScope>(8));
  EXPECT_THAT(message(spec), HasSubstr("unknown allocation scope 8"));
}

TEST(ConvertBlockTest, MeasurementRoundTrips) {
  BlockMeasurement m;
  m.block = 5;
  m.calibration_tokens = 4096;
  m.layers = {{"l.q", 768, {0.5, 1e-300, 7.25}, {}}, {"l.down", 3072, {}, {9.5, 2.25, 0.5, 0}}};
  v1::BlockMeasurement proto;
  proto.set_block(99);  // Replaced, not merged.
  proto.add_layers()->set_name("stale");
  ToProto(m, &proto);
  const BlockMeasurement back = FromProto(proto);
  EXPECT_EQ(back.block, 5);
  EXPECT_EQ(back.calibration_tokens, 4096);
  ASSERT_EQ(back.layers.size(), 2u);
  EXPECT_EQ(back.layers[0].name, "l.q");
  EXPECT_EQ(back.layers[0].rows, 768);
  EXPECT_EQ(back.layers[0].column_loss, m.layers[0].column_loss);
  EXPECT_EQ(back.layers[1].name, "l.down");
  EXPECT_TRUE(back.layers[1].column_loss.empty());
  EXPECT_TRUE(back.layers[0].candidate_loss.empty());
  EXPECT_EQ(back.layers[1].candidate_loss, m.layers[1].candidate_loss);
}

TEST(ConvertBlockTest, AllocationRoundTrips) {
  const std::vector<LayerAllocation> a = {{"l.q", {2, 4, 256}, 3}, {"l.k", {}, 0}};
  google::protobuf::RepeatedPtrField<v1::LayerAllocation> proto;
  proto.Add()->set_name("stale");
  ToProto(a, &proto);
  const std::vector<LayerAllocation> back = FromProto(proto);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].name, "l.q");
  EXPECT_EQ(back[0].levels, (std::vector<int32_t>{2, 4, 256}));
  EXPECT_EQ(back[0].gptq_bits, 3);
  EXPECT_EQ(back[1].name, "l.k");
  EXPECT_TRUE(back[1].levels.empty());
}

TEST(ConvertBlockTest, LayerReportRoundTrips) {
  LayerReport r{"l.up", 3072, 768, 1.5e6, 0.125, 2.5, 4, 0.25};
  v1::LayerReport proto;
  ToProto(r, &proto);
  const LayerReport back = FromProto(proto);
  EXPECT_EQ(back.name, r.name);
  EXPECT_EQ(back.rows, r.rows);
  EXPECT_EQ(back.columns, r.columns);
  EXPECT_EQ(back.bits_sum, r.bits_sum);
  EXPECT_EQ(back.proxy_loss, r.proxy_loss);
  EXPECT_EQ(back.seconds, r.seconds);
  EXPECT_EQ(back.gptq_bits, r.gptq_bits);
  EXPECT_EQ(back.gptq_proxy_loss, r.gptq_proxy_loss);
}

TEST(ConvertTensorHeaderTest, RoundTripsEverythingButTheBytes) {
  const TensorBytes t{"l.qweight", DType::kI32, {3, 4}, std::string(48, 'x')};
  v1::TensorHeader h;
  ToProtoHeader(t, /*format=*/2, &h);
  EXPECT_EQ(h.dtype(), "I32");
  EXPECT_EQ(h.format(), 2);
  EXPECT_EQ(h.total_bytes(), 48u);
  absl::StatusOr<TensorBytes> back = FromProtoHeader(h);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->name, t.name);
  EXPECT_EQ(back->dtype, DType::kI32);
  EXPECT_EQ(back->shape, t.shape);
  EXPECT_TRUE(back->bytes.empty());
  EXPECT_GE(back->bytes.capacity(), 48u);  // Reserved for the data chunks.
}

TEST(ConvertTensorHeaderTest, HugeAnnouncedSizeIsNotAllocatedUpFront) {
  // A valid header announcing 4 TiB: accepted (the stream may still bring it), but only
  // kMaxUpfrontReserveBytes are reserved before any data chunk arrives.
  v1::TensorHeader h;
  h.set_name("huge");
  h.set_dtype("F32");
  h.add_shape(uint64_t{1} << 20);
  h.add_shape(uint64_t{1} << 20);
  h.set_total_bytes(uint64_t{4} << 40);
  absl::StatusOr<TensorBytes> got = FromProtoHeader(h);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_LE(got->bytes.capacity(), kMaxUpfrontReserveBytes + 64);
}

TEST(ConvertTensorHeaderTest, ScalarsAndEmptyTensors) {
  v1::TensorHeader h;
  h.set_name("s");
  h.set_dtype("F64");
  h.set_total_bytes(8);  // Shape [] is one element.
  EXPECT_TRUE(FromProtoHeader(h).ok());
  h.add_shape(0);
  h.set_total_bytes(0);
  EXPECT_TRUE(FromProtoHeader(h).ok());
}

TEST(ConvertTensorHeaderTest, RejectsInconsistentHeadersNamingTheTensor) {
  auto message = [](const v1::TensorHeader& h) {
    absl::StatusOr<TensorBytes> got = FromProtoHeader(h);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(got.status().message());
  };
  v1::TensorHeader h;
  h.set_name("l.scales");
  h.set_dtype("F8_E4M3");
  EXPECT_THAT(message(h), HasSubstr("unknown dtype \"F8_E4M3\""));
  h.set_dtype("F16");
  h.add_shape(2);
  h.add_shape(-3);
  EXPECT_THAT(message(h), HasSubstr("l.scales: negative dim"));
  h.clear_shape();
  h.add_shape(2);
  h.add_shape(3);
  h.set_total_bytes(11);
  EXPECT_THAT(message(h), HasSubstr("l.scales: 11 bytes do not match shape and dtype F16"));
  // 2^33 x 2^31 x 2 bytes wraps a 64-bit byte count to 0: must not pass as an
  // empty tensor.
  h.clear_shape();
  h.add_shape(int64_t{1} << 33);
  h.add_shape(int64_t{1} << 31);
  h.set_total_bytes(0);
  EXPECT_THAT(message(h), HasSubstr("l.scales: shape overflows"));
}

TEST(ConvertLayerShapeTest, RoundTrips) {
  const std::vector<LayerShape> layers = {{"model.layers.0.mlp.up_proj", 2, 1536, 384},
                                          {"model.layers.0.mlp.down_proj", 3, 384, 1536}};
  google::protobuf::RepeatedPtrField<v1::LayerShape> proto;
  ToProto(layers, &proto);
  ASSERT_EQ(proto.size(), 2);
  EXPECT_EQ(proto[1].columns(), 1536);
  const std::vector<LayerShape> back = FromProto(proto);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].name, layers[0].name);
  EXPECT_EQ(back[0].input_group, 2);
  EXPECT_EQ(back[0].rows, 1536);
  EXPECT_EQ(back[1].columns, 1536);
}

TEST(TensorStreamAssemblerTest, ReassemblesTensorsAndChecksTheirSizes) {
  v1::TensorHeader a;
  ToProtoHeader(TensorBytes{"a", DType::kF16, {2, 2}, std::string(8, 'x')}, -1, &a);
  v1::TensorHeader b;
  ToProtoHeader(TensorBytes{"b", DType::kU8, {3}, "abc"}, -1, &b);
  TensorStreamAssembler ok;
  ASSERT_TRUE(ok.AddHeader(a).ok());
  ASSERT_TRUE(ok.AddData("xxx").ok());
  ASSERT_TRUE(ok.AddData("xxxxx").ok());
  ASSERT_TRUE(ok.AddHeader(b).ok());
  ASSERT_TRUE(ok.AddData("abc").ok());
  EXPECT_EQ(ok.bytes_received(), 11u);
  absl::StatusOr<std::vector<TensorBytes>> got = std::move(ok).Finish();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].bytes, std::string(8, 'x'));
  EXPECT_EQ((*got)[1].name, "b");
  EXPECT_EQ((*got)[1].bytes, "abc");

  TensorStreamAssembler early;
  EXPECT_THAT(early.AddData("x").message(), HasSubstr("data before any header"));
  TensorStreamAssembler too_much;
  ASSERT_TRUE(too_much.AddHeader(b).ok());
  EXPECT_THAT(too_much.AddData("abcd").message(), HasSubstr("b: more than 3 bytes"));
  TensorStreamAssembler short_one;
  ASSERT_TRUE(short_one.AddHeader(a).ok());
  ASSERT_TRUE(short_one.AddData("x").ok());
  EXPECT_THAT(short_one.AddHeader(b).message(), HasSubstr("a: got 1 of 8 bytes"));
  TensorStreamAssembler unfinished;
  ASSERT_TRUE(unfinished.AddHeader(b).ok());
  EXPECT_EQ(std::move(unfinished).Finish().status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baq
