#include "proto/convert.h"

#include <algorithm>

#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace baq {
namespace {

template <typename T>
T OrDefault(T value, T fallback) {
  return value == T{} ? fallback : value;
}

v1::Method ToProto(QuantMethod m) {
  switch (m) {
    case QuantMethod::kBaq:
      return v1::METHOD_BAQ;
    case QuantMethod::kGptq:
      return v1::METHOD_GPTQ;
    case QuantMethod::kRtn:
      return v1::METHOD_RTN;
  }
  return v1::METHOD_UNSPECIFIED;
}

absl::StatusOr<QuantMethod> FromProto(v1::Method m) {
  switch (m) {
    case v1::METHOD_UNSPECIFIED:
    case v1::METHOD_BAQ:
      return QuantMethod::kBaq;
    case v1::METHOD_GPTQ:
      return QuantMethod::kGptq;
    case v1::METHOD_RTN:
      return QuantMethod::kRtn;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown method ", static_cast<int>(m)));
}

v1::OutputFormat ToProto(OutputFormat f) {
  switch (f) {
    case OutputFormat::kFakeQuant:
      return v1::OUTPUT_FORMAT_FAKE_QUANT;
    case OutputFormat::kPacked:
      return v1::OUTPUT_FORMAT_PACKED;
    case OutputFormat::kGptq:
      return v1::OUTPUT_FORMAT_GPTQ;
    case OutputFormat::kCompressedTensors:
      return v1::OUTPUT_FORMAT_COMPRESSED_TENSORS;
  }
  return v1::OUTPUT_FORMAT_UNSPECIFIED;
}

absl::StatusOr<OutputFormat> FromProto(v1::OutputFormat f) {
  switch (f) {
    case v1::OUTPUT_FORMAT_FAKE_QUANT:
      return OutputFormat::kFakeQuant;
    case v1::OUTPUT_FORMAT_PACKED:
      return OutputFormat::kPacked;
    case v1::OUTPUT_FORMAT_GPTQ:
      return OutputFormat::kGptq;
    case v1::OUTPUT_FORMAT_COMPRESSED_TENSORS:
      return OutputFormat::kCompressedTensors;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown output format ", static_cast<int>(f)));
}

absl::StatusOr<ExecutionMode> FromProto(v1::ExecutionMode m) {
  switch (m) {
    case v1::EXECUTION_MODE_UNSPECIFIED:
    case v1::EXECUTION_MODE_SEQUENTIAL:
      return ExecutionMode::kSequential;
    case v1::EXECUTION_MODE_PARALLEL:
      return ExecutionMode::kParallel;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown execution mode ", static_cast<int>(m)));
}

absl::StatusOr<ForwardDtype> FromProto(v1::ForwardDtype d) {
  switch (d) {
    case v1::FORWARD_DTYPE_AUTO:
      return ForwardDtype::kAuto;
    case v1::FORWARD_DTYPE_FLOAT32:
      return ForwardDtype::kFloat32;
    case v1::FORWARD_DTYPE_BFLOAT16:
      return ForwardDtype::kBFloat16;
    case v1::FORWARD_DTYPE_FLOAT16:
      return ForwardDtype::kFloat16;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown forward dtype ", static_cast<int>(d)));
}

v1::ForwardDtype ToProto(ForwardDtype d) {
  switch (d) {
    case ForwardDtype::kFloat32:
      return v1::FORWARD_DTYPE_FLOAT32;
    case ForwardDtype::kBFloat16:
      return v1::FORWARD_DTYPE_BFLOAT16;
    case ForwardDtype::kFloat16:
      return v1::FORWARD_DTYPE_FLOAT16;
    case ForwardDtype::kAuto:
      break;
  }
  return v1::FORWARD_DTYPE_AUTO;
}

absl::StatusOr<AllocationScope> FromProto(v1::AllocationScope s) {
  switch (s) {
    case v1::ALLOCATION_SCOPE_UNSPECIFIED:
    case v1::ALLOCATION_SCOPE_GLOBAL:
      return AllocationScope::kGlobal;
    case v1::ALLOCATION_SCOPE_SUBLAYER:
      return AllocationScope::kSublayer;
    case v1::ALLOCATION_SCOPE_GLOBAL_RAW:
      return AllocationScope::kGlobalRaw;
    case v1::ALLOCATION_SCOPE_MODULE:
      return AllocationScope::kModule;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown allocation scope ", static_cast<int>(s)));
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

void ToProto(const JobConfig& config, v1::JobSpec* spec) {
  spec->Clear();
  spec->set_model_dir(config.model_dir);
  spec->set_output_dir(config.output_dir);
  for (OutputFormat f : config.formats) spec->add_formats(ToProto(f));
  v1::CalibrationSpec* calib = spec->mutable_calibration();
  for (const std::string& f : config.calibration.files) calib->add_files(f);
  calib->set_num_samples(config.calibration.num_samples);
  calib->set_seqlen(config.calibration.seqlen);
  calib->set_seed(config.calibration.seed);
  const QuantizationConfig& q = config.quant;
  v1::QuantizationOptions* opts = spec->mutable_quantization();
  opts->set_method(ToProto(q.method));
  opts->set_target_bits(q.target_bits);
  opts->set_symmetric(q.symmetric);
  opts->set_group_size(q.group_size);
  opts->set_act_order(q.act_order);
  opts->set_static_groups(q.static_groups);
  opts->set_percdamp(q.percdamp);
  opts->set_block_size(q.block_size);
  opts->set_allocation_scope(
      q.allocation_scope == AllocationScope::kSublayer    ? v1::ALLOCATION_SCOPE_SUBLAYER
      : q.allocation_scope == AllocationScope::kGlobalRaw ? v1::ALLOCATION_SCOPE_GLOBAL_RAW
      : q.allocation_scope == AllocationScope::kModule    ? v1::ALLOCATION_SCOPE_MODULE
                                                          : v1::ALLOCATION_SCOPE_GLOBAL);
  if (q.module_allocation()) {
    opts->mutable_candidate_bits()->Add(q.candidate_bits.begin(), q.candidate_bits.end());
  }
  opts->set_allocation_form(v1::ALLOCATION_FORM_EXPONENTIAL);
  opts->set_theta(q.theta);
  opts->set_max_levels(q.max_levels);
  spec->set_mode(config.mode == ExecutionMode::kParallel ? v1::EXECUTION_MODE_PARALLEL
                                                         : v1::EXECUTION_MODE_SEQUENTIAL);
  spec->set_eval_file(config.eval_file);
  spec->set_calibration_shards(config.calibration_shards);
  spec->mutable_extra_target_bits()->Add(config.extra_target_bits.begin(),
                                         config.extra_target_bits.end());
  spec->set_measurement_dir(config.measurement_dir);
  spec->set_quantize_projections(config.quantize_projections);
  spec->set_max_shard_bytes(config.max_shard_bytes);
  spec->set_forward_dtype(ToProto(config.forward_dtype));
  if (config.eval_gate.enabled()) {
    v1::EvalGateSpec* gate = spec->mutable_eval_gate();
    gate->set_text_file(config.eval_gate.text_file);
    gate->set_seqlen(config.eval_gate.seqlen);
    gate->set_max_ppl(config.eval_gate.max_ppl);
    gate->set_max_ppl_ratio(config.eval_gate.max_ppl_ratio);
  }
}

absl::StatusOr<JobConfig> FromProto(const v1::JobSpec& spec) {
  const JobConfig defaults;
  JobConfig config;
  config.model_dir = spec.model_dir();
  config.output_dir = spec.output_dir();
  if (spec.formats_size() > 0) {
    config.formats.clear();
    for (int f : spec.formats()) {
      auto format = FromProto(static_cast<v1::OutputFormat>(f));
      if (!format.ok()) return format.status();
      config.formats.push_back(*format);
    }
  }
  const v1::CalibrationSpec& calib = spec.calibration();
  config.calibration.files.assign(calib.files().begin(), calib.files().end());
  config.calibration.num_samples = OrDefault(calib.num_samples(), defaults.calibration.num_samples);
  config.calibration.seqlen = OrDefault(calib.seqlen(), defaults.calibration.seqlen);
  config.calibration.seed = calib.seed();

  const v1::QuantizationOptions& opts = spec.quantization();
  QuantizationConfig& q = config.quant;
  auto method = FromProto(opts.method());
  if (!method.ok()) return method.status();
  q.method = *method;
  q.target_bits = OrDefault(opts.target_bits(), defaults.quant.target_bits);
  q.symmetric = opts.symmetric();
  q.group_size = opts.group_size() == 0 ? -1 : opts.group_size();
  q.act_order = opts.act_order();
  q.static_groups = opts.static_groups();
  q.percdamp = OrDefault(opts.percdamp(), defaults.quant.percdamp);
  q.block_size = OrDefault(opts.block_size(), defaults.quant.block_size);
  auto scope = FromProto(opts.allocation_scope());
  if (!scope.ok()) return scope.status();
  q.allocation_scope = *scope;
  // The equal-loss form is the exponential form with theta = 2.
  const double form_theta =
      opts.allocation_form() == v1::ALLOCATION_FORM_EQUAL_LOSS ? 2.0 : defaults.quant.theta;
  q.theta = OrDefault(opts.theta(), form_theta);
  q.max_levels = OrDefault(opts.max_levels(), defaults.quant.max_levels);
  if (opts.candidate_bits_size() > 0) {
    q.candidate_bits.assign(opts.candidate_bits().begin(), opts.candidate_bits().end());
  }

  auto mode = FromProto(spec.mode());
  if (!mode.ok()) return mode.status();
  config.mode = *mode;
  config.eval_file = spec.eval_file();
  // 0 (unset): one shard per worker the job starts on.
  config.calibration_shards = spec.calibration_shards();
  config.extra_target_bits.assign(spec.extra_target_bits().begin(),
                                  spec.extra_target_bits().end());
  config.measurement_dir = spec.measurement_dir();
  config.quantize_projections = spec.quantize_projections();
  config.max_shard_bytes = OrDefault(spec.max_shard_bytes(), defaults.max_shard_bytes);
  auto forward_dtype = FromProto(spec.forward_dtype());
  if (!forward_dtype.ok()) return forward_dtype.status();
  config.forward_dtype = *forward_dtype;
  if (spec.has_eval_gate()) {
    const v1::EvalGateSpec& gate = spec.eval_gate();
    config.eval_gate.text_file = gate.text_file();
    config.eval_gate.seqlen = OrDefault(gate.seqlen(), defaults.eval_gate.seqlen);
    config.eval_gate.max_ppl = gate.max_ppl();
    config.eval_gate.max_ppl_ratio = gate.max_ppl_ratio();
  }
  return config;
}

void ToProto(const BlockMeasurement& m, v1::BlockMeasurement* proto) {
  proto->Clear();
  proto->set_block(m.block);
  proto->set_calibration_tokens(m.calibration_tokens);
  for (const LayerMeasurement& layer : m.layers) {
    v1::LayerMeasurement* l = proto->add_layers();
    l->set_name(layer.name);
    l->set_rows(layer.rows);
    l->mutable_column_loss()->Add(layer.column_loss.begin(), layer.column_loss.end());
    l->mutable_candidate_loss()->Add(layer.candidate_loss.begin(), layer.candidate_loss.end());
  }
}

BlockMeasurement FromProto(const v1::BlockMeasurement& proto) {
  BlockMeasurement m;
  m.block = proto.block();
  m.calibration_tokens = proto.calibration_tokens();
  for (const v1::LayerMeasurement& l : proto.layers()) {
    LayerMeasurement& layer = m.layers.emplace_back();
    layer.name = l.name();
    layer.rows = l.rows();
    layer.column_loss.assign(l.column_loss().begin(), l.column_loss().end());
    layer.candidate_loss.assign(l.candidate_loss().begin(), l.candidate_loss().end());
  }
  return m;
}

void ToProto(const std::vector<LayerAllocation>& allocation,
             google::protobuf::RepeatedPtrField<v1::LayerAllocation>* proto) {
  proto->Clear();
  for (const LayerAllocation& a : allocation) {
    v1::LayerAllocation* p = proto->Add();
    p->set_name(a.name);
    p->mutable_levels()->Add(a.levels.begin(), a.levels.end());
    p->set_gptq_bits(a.gptq_bits);
  }
}

std::vector<LayerAllocation> FromProto(
    const google::protobuf::RepeatedPtrField<v1::LayerAllocation>& proto) {
  std::vector<LayerAllocation> allocation;
  allocation.reserve(proto.size());
  for (const v1::LayerAllocation& p : proto) {
    LayerAllocation& a = allocation.emplace_back();
    a.name = p.name();
    a.levels.assign(p.levels().begin(), p.levels().end());
    a.gptq_bits = p.gptq_bits();
  }
  return allocation;
}

void ToProto(const LayerReport& r, v1::LayerReport* proto) {
  proto->set_name(r.name);
  proto->set_rows(r.rows);
  proto->set_columns(r.columns);
  proto->set_bits_sum(r.bits_sum);
  proto->set_proxy_loss(r.proxy_loss);
  proto->set_seconds(r.seconds);
  proto->set_gptq_bits(r.gptq_bits);
  proto->set_gptq_proxy_loss(r.gptq_proxy_loss);
  if (r.expert_tokens >= 0) {
    proto->set_is_expert(true);
    proto->set_expert_tokens(r.expert_tokens);
    proto->set_expert_top_up_tokens(r.expert_top_up_tokens);
  }
}

LayerReport FromProto(const v1::LayerReport& p) {
  LayerReport r;
  r.name = p.name();
  r.rows = p.rows();
  r.columns = p.columns();
  r.bits_sum = p.bits_sum();
  r.proxy_loss = p.proxy_loss();
  r.seconds = p.seconds();
  r.gptq_bits = p.gptq_bits();
  r.gptq_proxy_loss = p.gptq_proxy_loss();
  if (p.is_expert()) {
    r.expert_tokens = p.expert_tokens();
    r.expert_top_up_tokens = p.expert_top_up_tokens();
  }
  return r;
}

void ToProtoHeader(const TensorBytes& tensor, int32_t format, v1::TensorHeader* header) {
  header->set_name(tensor.name);
  header->set_dtype(std::string(DTypeName(tensor.dtype)));
  header->mutable_shape()->Add(tensor.shape.begin(), tensor.shape.end());
  header->set_format(format);
  header->set_total_bytes(tensor.bytes.size());
}

absl::StatusOr<TensorBytes> FromProtoHeader(const v1::TensorHeader& header) {
  TensorBytes tensor;
  tensor.name = header.name();
  auto dtype = ParseDType(header.dtype());
  if (!dtype.ok()) return dtype.status();
  tensor.dtype = *dtype;
  // The byte count in uint64 without wrapping: a wrapped product could match
  // a small total_bytes (an empty tensor with an absurd shape).
  uint64_t bytes = DTypeSize(tensor.dtype);
  for (int64_t d : header.shape()) {
    if (d < 0) return absl::InvalidArgumentError(absl::StrCat(tensor.name, ": negative dim"));
    tensor.shape.push_back(d);
    if (d != 0 && bytes > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d)) {
      return absl::InvalidArgumentError(
          absl::StrCat(tensor.name, ": shape overflows a 64-bit byte count"));
    }
    bytes *= static_cast<uint64_t>(d);
  }
  if (bytes != header.total_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(tensor.name, ": ", header.total_bytes(),
                                                   " bytes do not match shape and dtype ",
                                                   header.dtype()));
  }
  tensor.bytes.reserve(std::min<uint64_t>(header.total_bytes(), kMaxUpfrontReserveBytes));
  return tensor;
}

void ToProto(const std::vector<LayerShape>& layers,
             google::protobuf::RepeatedPtrField<v1::LayerShape>* proto) {
  for (const LayerShape& l : layers) {
    v1::LayerShape* p = proto->Add();
    p->set_name(l.name);
    p->set_input_group(l.input_group);
    p->set_rows(l.rows);
    p->set_columns(l.columns);
  }
}

std::vector<LayerShape> FromProto(
    const google::protobuf::RepeatedPtrField<v1::LayerShape>& proto) {
  std::vector<LayerShape> out;
  for (const v1::LayerShape& p : proto) {
    out.push_back(LayerShape{p.name(), p.input_group(), p.rows(), p.columns()});
  }
  return out;
}

absl::Status TensorStreamAssembler::CheckComplete() const {
  if (tensors_.empty() || tensors_.back().bytes.size() == expected_) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(tensors_.back().name, ": got ",
                                                 tensors_.back().bytes.size(), " of ",
                                                 expected_, " bytes"));
}

absl::Status TensorStreamAssembler::AddHeader(const v1::TensorHeader& header) {
  if (absl::Status s = CheckComplete(); !s.ok()) return s;
  absl::StatusOr<TensorBytes> t = FromProtoHeader(header);
  if (!t.ok()) return t.status();
  expected_ = header.total_bytes();
  tensors_.push_back(*std::move(t));
  return absl::OkStatus();
}

absl::Status TensorStreamAssembler::AddData(const std::string& data) {
  if (tensors_.empty()) return absl::InvalidArgumentError("tensor data before any header");
  std::string& bytes = tensors_.back().bytes;
  if (bytes.size() + data.size() > expected_) {
    return absl::InvalidArgumentError(
        absl::StrCat(tensors_.back().name, ": more than ", expected_, " bytes streamed"));
  }
  bytes.append(data);
  bytes_received_ += data.size();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TensorBytes>> TensorStreamAssembler::Finish() && {
  if (absl::Status s = CheckComplete(); !s.ok()) return s;
  return std::move(tensors_);
}

}  // namespace baq
