#include "coordinator/output_assembler.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/failpoint.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "coordinator/export_metadata.h"

namespace baq::coordinator {
namespace {

namespace fs = std::filesystem;

// Files copied verbatim from the model dir when present.
constexpr const char* kSideFiles[] = {"tokenizer.json", "tokenizer_config.json",
                                      "special_tokens_map.json", "generation_config.json",
                                      "tokenizer.model", "vocab.json", "merges.txt"};

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteFile(const std::string& path, const std::string& contents) {
  BAQ_FAILPOINT("output_assembler.before_write_file");
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("cannot write ", path));
  BAQ_FAILPOINT("output_assembler.after_write_file");
  return absl::OkStatus();
}

}  // namespace

nlohmann::json QuantizationConfigJson(OutputFormat format, const JobConfig& config,
                                      const nlohmann::json& report) {
  const QuantizationConfig& q = config.quant;
  switch (format) {
    case OutputFormat::kFakeQuant:
      return nullptr;
    case OutputFormat::kPacked:
      return {{"quant_method", "baq"},
              {"format", "baq-packed-v1"},
              {"method", std::string(QuantMethodName(q.method))},
              {"target_bits", q.target_bits},
              {"achieved_bits", report.value("achieved_bits", 0.0)},
              {"group_size", q.group_size},
              {"sym", q.symmetric},
              {"desc_act", q.act_order}};
    case OutputFormat::kGptq:
      return GptqConfigJson(config, report);
    case OutputFormat::kCompressedTensors:
      return CompressedTensorsConfigJson(config, report);
  }
  return nullptr;
}

absl::StatusOr<std::unique_ptr<OutputAssembler>> OutputAssembler::Create(
    const JobConfig& config) {
  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsCheckpoint> input,
                       SafetensorsCheckpoint::Open(config.model_dir));
  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<AtomicOutputDir> out,
                       AtomicOutputDir::Create(config.output_dir));
  std::unique_ptr<OutputAssembler> a(
      new OutputAssembler(config, std::move(out), std::move(input)));
  for (OutputFormat format : config.formats) {
    FormatOutput f;
    f.format = format;
    f.dir = config.formats.size() == 1
                ? a->out_->temp_path()
                : absl::StrCat(a->out_->temp_path(), "/", OutputFormatName(format));
    std::error_code ec;
    fs::create_directories(f.dir, ec);
    if (ec) return absl::InternalError(absl::StrCat("mkdir ", f.dir, ": ", ec.message()));
    BAQ_ASSIGN_OR_RETURN(f.writer, ShardedSafetensorsWriter::Create(f.dir, config.max_shard_bytes));
    f.writer->SetMetadata("format", "pt");
    f.writer->SetMetadata("quantizer", "baq");
    a->formats_.push_back(std::move(f));
  }
  return a;
}

absl::Status OutputAssembler::AddBlock(const BlockOutput& output) {
  if (output.block <= last_block_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "output of block ", output.block, " arrived after block ", last_block_));
  }
  if (output.tensor_format.size() != output.tensors.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("block ", output.block, ": tensor_format size mismatch"));
  }
  last_block_ = output.block;
  for (const LayerReport& layer : output.layers) replaced_.insert(layer.name + ".weight");
  for (size_t i = 0; i < output.tensors.size(); ++i) {
    const int32_t fi = output.tensor_format[i];
    if (fi < 0 || static_cast<size_t>(fi) >= formats_.size()) {
      return absl::InvalidArgumentError(absl::StrCat("block ", output.block, ": tensor ",
                                                     output.tensors[i].name,
                                                     " has unknown format index ", fi));
    }
    const TensorBytes& t = output.tensors[i];
    BAQ_FAILPOINT("output_assembler.add_block");
    BAQ_RETURN_IF_ERROR(formats_[fi].writer->Add(
        t.name, t.dtype, t.shape,
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(t.bytes.data()), t.bytes.size())));
  }
  return absl::OkStatus();
}

absl::Status OutputAssembler::CopyUntouchedTensors(FormatOutput& f) {
  for (const std::string& name : input_->TensorNames()) {
    if (replaced_.count(name) > 0) continue;
    BAQ_ASSIGN_OR_RETURN(TensorView view, input_->Get(name));
    BAQ_RETURN_IF_ERROR(f.writer->Add(name, view.dtype, view.shape, view.bytes));
  }
  return absl::OkStatus();
}

absl::Status OutputAssembler::WriteSideFiles(const FormatOutput& f,
                                             const nlohmann::json& report) {
  BAQ_ASSIGN_OR_RETURN(std::string config_text, ReadFile(config_.model_dir + "/config.json"));
  nlohmann::json model_config = nlohmann::json::parse(config_text, nullptr, false);
  if (model_config.is_discarded() || !model_config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_.model_dir, "/config.json: not a JSON object"));
  }
  nlohmann::json qc = QuantizationConfigJson(f.format, config_, report);
  if (!qc.is_null()) model_config["quantization_config"] = qc;
  BAQ_RETURN_IF_ERROR(WriteFile(f.dir + "/config.json", model_config.dump(2) + "\n"));
  for (const char* side : kSideFiles) {
    const std::string src = absl::StrCat(config_.model_dir, "/", side);
    if (!fs::exists(src)) continue;
    BAQ_ASSIGN_OR_RETURN(std::string contents, ReadFile(src));
    BAQ_RETURN_IF_ERROR(WriteFile(absl::StrCat(f.dir, "/", side), contents));
  }
  return WriteReportAndCard(f, report);
}

absl::Status OutputAssembler::WriteReportAndCard(const FormatOutput& f,
                                                 const nlohmann::json& report) {
  nlohmann::json r = report;
  r["format"] = std::string(OutputFormatName(f.format));
  BAQ_RETURN_IF_ERROR(WriteFile(f.dir + "/quant_report.json", r.dump(2) + "\n"));
  return WriteFile(f.dir + "/README.md", ModelCardMarkdown(f.format, config_, report));
}

absl::Status OutputAssembler::Stage(const nlohmann::json& report) {
  if (staged_) return absl::FailedPreconditionError("output already staged");
  for (FormatOutput& f : formats_) {
    BAQ_RETURN_IF_ERROR(Annotate(CopyUntouchedTensors(f), OutputFormatName(f.format)));
    BAQ_RETURN_IF_ERROR(Annotate(f.writer->Finish(), OutputFormatName(f.format)));
    BAQ_RETURN_IF_ERROR(WriteSideFiles(f, report));
  }
  BAQ_FAILPOINT("output_assembler.before_commit");
  staged_ = true;
  return absl::OkStatus();
}

std::string OutputAssembler::StagedDir(OutputFormat format) const {
  if (!staged_) return "";
  for (const FormatOutput& f : formats_) {
    if (f.format == format) return f.dir;
  }
  return "";
}

absl::Status OutputAssembler::Publish(const nlohmann::json& report) {
  if (!staged_) return absl::FailedPreconditionError("output not staged");
  for (const FormatOutput& f : formats_) BAQ_RETURN_IF_ERROR(WriteReportAndCard(f, report));
  return out_->Commit();
}

absl::Status OutputAssembler::Commit(const nlohmann::json& report) {
  BAQ_RETURN_IF_ERROR(Stage(report));
  return out_->Commit();
}

}  // namespace baq::coordinator
