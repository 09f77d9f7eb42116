// OutputAssembler over a two-tensor model written in the test: one format is
// the output dir itself, several get a subdir each with their own
// quantization_config; quantized tensors replace the input's and everything
// else is copied; nothing is visible before Publish (atomic publish), and
// an assembler dropped before it leaves no trace. Failure paths: blocks out of
// order, malformed block outputs, calls in the wrong order, an existing
// output, a missing or broken model dir, an injected write error.
#include "coordinator/output_assembler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/failpoint.h"
#include "common/safetensors_checkpoint.h"
#include "common/safetensors_writer.h"
#include "tests/fakes/fake_job_config.h"
#include "tests/testing/test_paths.h"

namespace baq::coordinator {
namespace {

namespace fs = std::filesystem;
using ::baq::testing::MakeScratchDir;
using ::baq::testing::ReadFileOrDie;
using ::baq::testing::WriteFileOrDie;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr char kLayer[] = "model.layers.0.mlp.up_proj";

std::string Bytes(size_t n, char fill) { return std::string(n, fill); }

absl::Span<const uint8_t> Span(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// model.safetensors with the layer's weight (to be replaced) and a norm (to
// be copied), config.json and one tokenizer file.
std::string WriteModel(const std::string& config_json = R"({"model_type": "llama"})") {
  const std::string dir = MakeScratchDir() + "/model";
  fs::create_directories(dir);
  auto writer = SafetensorsWriter::Create(dir + "/model.safetensors");
  EXPECT_TRUE(writer.ok()) << writer.status();
  const std::string weight = Bytes(4 * 4 * 2, 'w');
  const std::string norm = Bytes(4 * 2, 'n');
  EXPECT_TRUE((*writer)->Add(std::string(kLayer) + ".weight", DType::kF16, {4, 4}, Span(weight)).ok());
  EXPECT_TRUE((*writer)->Add("model.norm.weight", DType::kF16, {4}, Span(norm)).ok());
  EXPECT_TRUE((*writer)->Finish().ok());
  WriteFileOrDie(dir + "/config.json", config_json);
  WriteFileOrDie(dir + "/tokenizer.json", R"({"version": "1.0"})");
  return dir;
}

JobConfig Config(const std::string& model, std::vector<OutputFormat> formats) {
  JobConfig config = baq::testing::FakeJobConfig(MakeScratchDir() + "/out", model);
  config.formats = std::move(formats);
  config.quant.target_bits = 3;
  return config;
}

// Block 0's output: one quantized weight per format (fake-quant: F16 of the
// original shape; packed/gptq: I32 words), all filled with `fill`.
BlockOutput Block(const JobConfig& config, char fill = 'q') {
  BlockOutput out;
  out.block = 0;
  for (size_t f = 0; f < config.formats.size(); ++f) {
    TensorBytes t;
    t.name = std::string(kLayer) + (config.formats[f] == OutputFormat::kFakeQuant ? ".weight"
                                                                                  : ".qweight");
    t.dtype = config.formats[f] == OutputFormat::kFakeQuant ? DType::kF16 : DType::kI32;
    t.shape = {4, 4};
    t.bytes = Bytes(32 * (t.dtype == DType::kI32 ? 2 : 1), fill);
    out.tensors.push_back(t);
    out.tensor_format.push_back(static_cast<int32_t>(f));
  }
  LayerReport layer;
  layer.name = kLayer;
  layer.rows = 4;
  layer.columns = 4;
  layer.gptq_bits = 3;
  out.layers.push_back(layer);
  return out;
}

nlohmann::json Report() {
  // The gptq config's `bits` is the most common width (3); the 2-bit module is a
  // `dynamic` override (without the fused gate_up_proj name: gate_proj differs).
  return {{"quantizer", "baq"},
          {"achieved_bits", 3.0},
          {"gptq_default_bits", 3},
          {"gptq_module_bits",
           {{kLayer, 2}, {"model.layers.0.mlp.gate_proj", 3}, {"model.layers.0.mlp.down_proj", 3}}}};
}

std::vector<std::string> TensorNames(const std::string& dir) {
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  return ckpt.ok() ? (*ckpt)->TensorNames() : std::vector<std::string>();
}

std::string TensorBytesOf(const std::string& dir, const std::string& name) {
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  auto view = (*ckpt)->Get(name);
  EXPECT_TRUE(view.ok()) << view.status();
  return view.ok() ? std::string(reinterpret_cast<const char*>(view->bytes.data()),
                                 view->bytes.size())
                   : "";
}

nlohmann::json ReadJson(const std::string& path) {
  return nlohmann::json::parse(ReadFileOrDie(path));
}

// Entries of `dir` (the output's parent): what anyone could see.
std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  return names;
}

TEST(OutputAssemblerTest, OneFormatIsTheOutputDirAndAppearsOnlyOnPublish) {
  const JobConfig config = Config(WriteModel(), {OutputFormat::kFakeQuant});
  const std::string parent = fs::path(config.output_dir).parent_path().string();
  auto out = OutputAssembler::Create(config);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE((*out)->AddBlock(Block(config)).ok());
  EXPECT_EQ((*out)->StagedDir(OutputFormat::kFakeQuant), "");  // Nothing staged yet.
  ASSERT_TRUE((*out)->Stage(Report()).ok());

  // Staged: complete and readable (the evaluation gate reads it), but hidden.
  const std::string staged = (*out)->StagedDir(OutputFormat::kFakeQuant);
  ASSERT_FALSE(staged.empty());
  EXPECT_THAT(TensorNames(staged),
              UnorderedElementsAre(std::string(kLayer) + ".weight", "model.norm.weight"));
  EXPECT_FALSE(fs::exists(config.output_dir));
  EXPECT_EQ((*out)->StagedDir(OutputFormat::kPacked), "");  // Not requested.

  nlohmann::json final_report = Report();
  final_report["eval_gate"] = {{"ppl", 12.0}};
  ASSERT_TRUE((*out)->Publish(final_report).ok());
  const std::string& dir = config.output_dir;
  // The quantized weight replaced the input's; the norm is copied unchanged.
  EXPECT_EQ(TensorBytesOf(dir, std::string(kLayer) + ".weight"), Bytes(32, 'q'));
  EXPECT_EQ(TensorBytesOf(dir, "model.norm.weight"), Bytes(8, 'n'));
  const nlohmann::json model_config = ReadJson(dir + "/config.json");
  EXPECT_EQ(model_config["model_type"], "llama");
  EXPECT_FALSE(model_config.contains("quantization_config"));  // Fake-quant loads as plain.
  EXPECT_EQ(ReadFileOrDie(dir + "/tokenizer.json"), R"({"version": "1.0"})");
  const nlohmann::json report = ReadJson(dir + "/quant_report.json");
  EXPECT_EQ(report["format"], "fake-quant");
  EXPECT_EQ(report["eval_gate"]["ppl"], 12.0);  // Publish's report, not Stage's.
  // The model card, rewritten by Publish with the gate's perplexity.
  EXPECT_THAT(ReadFileOrDie(dir + "/README.md"), HasSubstr("| 12.0000 |"));
  // Only the output is left in the parent: no temp dir.
  EXPECT_THAT(Entries(parent), ElementsAre("out"));
}

TEST(OutputAssemblerTest, SeveralFormatsGetASubdirAndAQuantizationConfigEach) {
  const JobConfig config = Config(
      WriteModel(), {OutputFormat::kFakeQuant, OutputFormat::kPacked, OutputFormat::kGptq});
  auto out = OutputAssembler::Create(config);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE((*out)->AddBlock(Block(config)).ok());
  ASSERT_TRUE((*out)->Commit(Report()).ok());

  const std::string& dir = config.output_dir;
  EXPECT_THAT(Entries(dir), UnorderedElementsAre("fake-quant", "packed", "gptq"));
  // Each tensor went to its own format; the quantized layer's original
  // weight is in none of them.
  EXPECT_THAT(TensorNames(dir + "/fake-quant"),
              UnorderedElementsAre(std::string(kLayer) + ".weight", "model.norm.weight"));
  EXPECT_THAT(TensorNames(dir + "/packed"),
              UnorderedElementsAre(std::string(kLayer) + ".qweight", "model.norm.weight"));
  EXPECT_THAT(TensorNames(dir + "/gptq"),
              UnorderedElementsAre(std::string(kLayer) + ".qweight", "model.norm.weight"));

  const nlohmann::json packed = ReadJson(dir + "/packed/config.json")["quantization_config"];
  EXPECT_EQ(packed["quant_method"], "baq");
  EXPECT_EQ(packed["format"], "baq-packed-v1");
  EXPECT_EQ(packed["achieved_bits"], 3.0);
  const nlohmann::json gptq = ReadJson(dir + "/gptq/config.json")["quantization_config"];
  EXPECT_EQ(gptq["quant_method"], "gptq");
  EXPECT_EQ(gptq["bits"], 3);
  // Per-module widths as GPTQModel `dynamic` overrides, dots escaped.
  EXPECT_EQ(gptq["dynamic"]["+:^model\\.layers\\.0\\.mlp\\.up_proj$"]["bits"], 2);
  EXPECT_FALSE(ReadJson(dir + "/fake-quant/config.json").contains("quantization_config"));
  for (const char* format : {"fake-quant", "packed", "gptq"}) {
    EXPECT_EQ(ReadJson(absl::StrCat(dir, "/", format, "/quant_report.json"))["format"], format);
    EXPECT_TRUE(fs::exists(absl::StrCat(dir, "/", format, "/tokenizer.json")));
  }
}

TEST(OutputAssemblerTest, ShardsBeyondMaxShardBytesWithAnIndex) {
  JobConfig config = Config(WriteModel(), {OutputFormat::kFakeQuant});
  config.max_shard_bytes = 32;  // The 32-byte layer fills shard 1; the norm goes to shard 2.
  auto out = OutputAssembler::Create(config);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE((*out)->AddBlock(Block(config)).ok());
  ASSERT_TRUE((*out)->Commit(Report()).ok());
  const std::string& dir = config.output_dir;
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  const nlohmann::json index = ReadJson(dir + "/model.safetensors.index.json");
  EXPECT_EQ(index["weight_map"][std::string(kLayer) + ".weight"],
            "model-00001-of-00002.safetensors");
  EXPECT_EQ(index["weight_map"]["model.norm.weight"], "model-00002-of-00002.safetensors");
  EXPECT_EQ(TensorBytesOf(dir, "model.norm.weight"), Bytes(8, 'n'));
}

TEST(OutputAssemblerTest, AnAssemblerDroppedBeforePublishLeavesNothing) {
  const JobConfig config = Config(WriteModel(), {OutputFormat::kFakeQuant, OutputFormat::kPacked});
  const std::string parent = fs::path(config.output_dir).parent_path().string();
  {
    auto out = OutputAssembler::Create(config);
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_TRUE((*out)->AddBlock(Block(config)).ok());
    ASSERT_TRUE((*out)->Stage(Report()).ok());  // A failed gate stops here.
    EXPECT_THAT(Entries(parent), ::testing::SizeIs(1));  // The hidden temp dir.
  }
  EXPECT_THAT(Entries(parent), IsEmpty());
}

TEST(OutputAssemblerTest, RejectsMalformedBlocksAndCallsOutOfOrder) {
  const JobConfig config = Config(WriteModel(), {OutputFormat::kFakeQuant});
  auto out = OutputAssembler::Create(config);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)->Publish(Report()).code(), absl::StatusCode::kFailedPrecondition);

  BlockOutput mismatched = Block(config);
  mismatched.tensor_format.push_back(0);
  EXPECT_EQ((*out)->AddBlock(mismatched).code(), absl::StatusCode::kInvalidArgument);
  BlockOutput unknown_format = Block(config);
  unknown_format.tensor_format[0] = 1;  // Only one format was requested.
  EXPECT_EQ((*out)->AddBlock(unknown_format).code(), absl::StatusCode::kInvalidArgument);

  BlockOutput second = Block(config);
  second.block = 1;
  second.tensors[0].name = "model.layers.1.mlp.up_proj.weight";
  ASSERT_TRUE((*out)->AddBlock(second).ok());
  EXPECT_EQ((*out)->AddBlock(Block(config)).code(), absl::StatusCode::kFailedPrecondition);

  ASSERT_TRUE((*out)->Stage(Report()).ok());
  EXPECT_EQ((*out)->Stage(Report()).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(OutputAssemblerTest, CreateFailsForAnExistingOutputOrAMissingModel) {
  const JobConfig config = Config(WriteModel(), {OutputFormat::kFakeQuant});
  fs::create_directories(config.output_dir);
  EXPECT_EQ(OutputAssembler::Create(config).status().code(), absl::StatusCode::kAlreadyExists);

  JobConfig missing = Config(MakeScratchDir() + "/no-model", {OutputFormat::kFakeQuant});
  EXPECT_FALSE(OutputAssembler::Create(missing).ok());
  EXPECT_FALSE(fs::exists(missing.output_dir));
}

TEST(OutputAssemblerTest, ABrokenModelConfigFailsStagingAndPublishesNothing) {
  const JobConfig config = Config(WriteModel("[1, 2]"), {OutputFormat::kFakeQuant});
  auto out = OutputAssembler::Create(config);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE((*out)->AddBlock(Block(config)).ok());
  EXPECT_EQ((*out)->Commit(Report()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(config.output_dir));
}

TEST(OutputAssemblerTest, AWriteErrorBeforeTheRenamePublishesNothing) {
  if (!failpoint::Enabled()) GTEST_SKIP() << "built without failpoints";
  const JobConfig config = Config(WriteModel(), {OutputFormat::kFakeQuant});
  const std::string parent = fs::path(config.output_dir).parent_path().string();
  {
    auto out = OutputAssembler::Create(config);
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_TRUE((*out)->AddBlock(Block(config)).ok());
    ASSERT_TRUE(failpoint::Configure("output_assembler.before_commit=enospc").ok());
    const absl::Status s = (*out)->Commit(Report());
    ASSERT_TRUE(failpoint::Configure("").ok());
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_FALSE(fs::exists(config.output_dir));
  }
  EXPECT_THAT(Entries(parent), IsEmpty());
}

}  // namespace
}  // namespace baq::coordinator
