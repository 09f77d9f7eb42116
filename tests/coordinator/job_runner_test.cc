// JobRunner over FakeBlockEngines (tests/fakes/fake_block_engine.h) and a
// tiny model dir written by the test (a LLaMA config.json whose quantizable
// elements per block equal the fakes' 2 layers x 8 rows x 10 columns, and a
// model.safetensors with one untouched tensor): the block protocol in both
// modes, activations moved between engines, the published output, progress,
// and the failure paths: an engine error, cancellation, an existing output,
// no engines; and recovery: a lost worker's block redone on a survivor and a
// resumed run, both publishing the bytes of an undisturbed run.
#include "coordinator/job_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/safetensors_writer.h"
#include "nlohmann/json.hpp"
#include "tests/fakes/fake_block_engine.h"
#include "tests/fakes/fake_job_config.h"
#include "tests/testing/test_paths.h"

namespace baq::coordinator {
namespace {

namespace fs = std::filesystem;
using ::baq::testing::FakeBlockEngine;
using ::baq::testing::FakeEngineLog;
using ::baq::testing::FakeEngineOptions;
using ::baq::testing::MakeScratchDir;
using ::baq::testing::ReadFileOrDie;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr int64_t kBlocks = 4;

std::string WriteTinyModel() {
  const std::string dir = MakeScratchDir() + "/model";
  fs::create_directories(dir);
  // Per block: q, k, v, o 4x4 and gate, up, down 4x8: 160 elements.
  baq::testing::WriteFileOrDie(
      dir + "/config.json",
      absl::StrCat(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 4, "intermediate_size": 8, "num_attention_heads": 1,
        "num_key_value_heads": 1, "num_hidden_layers": )",
                   kBlocks, R"(, "vocab_size": 16, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-05, "torch_dtype": "float16", "hidden_act": "silu"})"));
  auto writer = SafetensorsWriter::Create(dir + "/model.safetensors");
  EXPECT_TRUE(writer.ok()) << writer.status();
  const std::string norm(8, 'n');
  EXPECT_TRUE((*writer)
                  ->Add("model.norm.weight", DType::kF16, {4},
                        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(norm.data()),
                                            norm.size()))
                  .ok());
  EXPECT_TRUE((*writer)->Finish().ok());
  return dir;
}

FakeEngineOptions EngineOptions() {
  FakeEngineOptions options;
  options.num_blocks = kBlocks;
  options.layers_per_block = 2;
  options.rows = 8;
  options.columns = 10;
  return options;
}

class JobRunnerTest : public ::testing::Test {
 protected:
  JobConfig Config(ExecutionMode mode = ExecutionMode::kSequential) {
    JobConfig config = baq::testing::FakeJobConfig(MakeScratchDir() + "/out", model_);
    config.mode = mode;
    config.quant.target_bits = 3;
    return config;
  }
  // Engines named e0, e1, ... (their log lines say which).
  std::vector<BlockEngine*> Engines(int n, FakeEngineOptions options = EngineOptions()) {
    std::vector<BlockEngine*> raw;
    for (int i = 0; i < n; ++i) {
      engines_.push_back(std::make_unique<FakeBlockEngine>(options, &log_, absl::StrCat("e", i)));
      raw.push_back(engines_.back().get());
    }
    return raw;
  }
  JobRunner::ProgressFn Record() {
    return [this](const JobProgress& p) { progress_.push_back(p); };
  }
  std::vector<std::string> LogOf(const std::string& engine) {
    std::vector<std::string> lines;
    for (const std::string& line : log_.entries()) {
      if (absl::StartsWith(line, engine + ": ")) lines.push_back(line.substr(engine.size() + 2));
    }
    return lines;
  }
  // The published model.safetensors of an undisturbed sequential run.
  std::string ReferenceOutput() {
    FakeEngineLog log;
    FakeBlockEngine engine(EngineOptions(), &log);
    const JobConfig config = Config();
    JobRunner runner(config, {&engine}, nullptr);
    EXPECT_TRUE(runner.Run().ok());
    return ReadFileOrDie(config.output_dir + "/model.safetensors");
  }

  const std::string model_ = WriteTinyModel();
  FakeEngineLog log_;
  std::vector<std::unique_ptr<FakeBlockEngine>> engines_;
  std::vector<JobProgress> progress_;  // Run() reports on the calling thread.
};

TEST_F(JobRunnerTest, SequentialRunMovesInputsBetweenEnginesAndPublishes) {
  const JobConfig config = Config();
  JobRunner runner(config, Engines(2), Record());
  absl::StatusOr<JobSummary> summary = runner.Run();
  ASSERT_TRUE(summary.ok()) << summary.status();
  // The plan splits the blocks; block 2's inputs come from e0, which ran 1.
  EXPECT_THAT(LogOf("e0"), ElementsAre("start", "measure 0", "quantize 0", "measure 1",
                                       "quantize 1", "export 2", "reset"));
  EXPECT_THAT(LogOf("e1"), ElementsAre("start", "import 2", "measure 2", "quantize 2",
                                       "measure 3", "quantize 3", "reset"));
  EXPECT_EQ(summary->output_dir, config.output_dir);
  EXPECT_NEAR(summary->achieved_bits, 3.0, 0.05);
  EXPECT_EQ(summary->quantized_elements, kBlocks * 160);
  EXPECT_TRUE(summary->published);
  ASSERT_EQ(summary->targets.size(), 1u);

  // The output holds every block's tensors as the engines made them.
  const std::string out = ReadFileOrDie(config.output_dir + "/model.safetensors");
  EXPECT_THAT(out, HasSubstr(FakeBlockEngine::ExpectedTensorBytes(3, 1, 64)));
  const nlohmann::json report =
      nlohmann::json::parse(ReadFileOrDie(config.output_dir + "/quant_report.json"));
  EXPECT_EQ(report["layers"].size(), static_cast<size_t>(2 * kBlocks));
  EXPECT_EQ(report["mode"], "sequential");

  // Progress: starting first, done last at 100 %, never going backwards.
  ASSERT_FALSE(progress_.empty());
  EXPECT_EQ(progress_.front().stage, JobStage::kStarting);
  EXPECT_EQ(progress_.back().stage, JobStage::kDone);
  EXPECT_EQ(progress_.back().percent, 100);
  EXPECT_EQ(progress_.back().blocks_done, kBlocks);
  for (size_t i = 1; i < progress_.size(); ++i) {
    EXPECT_GE(progress_[i].percent, progress_[i - 1].percent);
  }
}

TEST_F(JobRunnerTest, ParallelRunMeasuresEveryBlockBeforeQuantizing) {
  const JobConfig config = Config(ExecutionMode::kParallel);
  JobRunner runner(config, Engines(1), Record());
  absl::StatusOr<JobSummary> summary = runner.Run();
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_THAT(LogOf("e0"),
              ElementsAre("start", "measure 0", "measure 1", "measure 2", "measure 3",
                          "quantize 0", "quantize 1", "quantize 2", "quantize 3", "reset"));
  EXPECT_NEAR(summary->achieved_bits, 3.0, 0.05);
  EXPECT_TRUE(fs::exists(config.output_dir + "/model.safetensors"));
  EXPECT_EQ(progress_.back().stage, JobStage::kDone);
}

TEST_F(JobRunnerTest, AnEngineErrorFailsTheJobAndPublishesNothing) {
  FakeEngineOptions failing = EngineOptions();
  failing.fail_block = 1;
  failing.fail_status = absl::InternalError("injected failure");
  const JobConfig config = Config();
  JobRunner runner(config, Engines(1, failing), Record());
  const absl::Status s = runner.Run().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(fs::exists(config.output_dir));
  EXPECT_TRUE(fs::is_empty(fs::path(config.output_dir).parent_path()));  // No temp dir either.
  EXPECT_THAT(LogOf("e0"), Not(Contains("quantize 1")));
}

TEST_F(JobRunnerTest, CancelStopsAtTheNextBlockAndPublishesNothing) {
  const JobConfig config = Config();
  std::vector<BlockEngine*> engines = Engines(1);
  std::unique_ptr<JobRunner> runner;
  // Cancel from the progress callback when block 1 starts: as a client's
  // Cancel would arrive mid-run, without a second thread.
  runner = std::make_unique<JobRunner>(config, engines, [&](const JobProgress& p) {
    if (p.stage == JobStage::kQuantizing && p.block == 1) runner->Cancel();
  });
  EXPECT_EQ(runner->Run().status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(fs::exists(config.output_dir));
  EXPECT_THAT(LogOf("e0"), Not(Contains("measure 2")));
}

TEST_F(JobRunnerTest, RefusesBeforeAnyWork) {
  JobRunner no_engines(Config(), {}, nullptr);
  EXPECT_EQ(no_engines.Run().status().code(), absl::StatusCode::kFailedPrecondition);

  JobConfig invalid = Config();
  invalid.quant.target_bits = 11;
  JobRunner bad(invalid, Engines(1), nullptr);
  EXPECT_EQ(bad.Run().status().code(), absl::StatusCode::kInvalidArgument);

  JobConfig exists = Config();
  fs::create_directories(exists.output_dir);
  JobRunner existing(exists, Engines(1), nullptr);
  EXPECT_EQ(existing.Run().status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(log_.entries(), IsEmpty());  // No engine was started.
}

TEST_F(JobRunnerTest, ALostWorkersBlockIsRedoneOnASurvivorWithTheSameBytes) {
  const std::string reference = ReferenceOutput();
  FakeEngineOptions lost = EngineOptions();
  lost.fail_block = 2;  // e1's first block: its worker is gone.
  lost.fail_status = absl::UnavailableError("worker crashed");
  engines_.push_back(std::make_unique<FakeBlockEngine>(EngineOptions(), &log_, "e0"));
  engines_.push_back(std::make_unique<FakeBlockEngine>(lost, &log_, "e1"));
  JobRunnerOptions options;
  options.checkpoint_dir = MakeScratchDir() + "/ckpt";
  options.job_id = "job-1";
  const JobConfig config = Config();
  JobRunner runner(config, {engines_[0].get(), engines_[1].get()}, Record(), options);
  absl::StatusOr<JobSummary> summary = runner.Run();
  ASSERT_TRUE(summary.ok()) << summary.status();
  // e0 imports block 2's inputs from the checkpoint and finishes the job.
  EXPECT_THAT(LogOf("e0"), ::testing::IsSupersetOf({"import 2", "measure 2", "quantize 3"}));
  EXPECT_EQ(ReadFileOrDie(config.output_dir + "/model.safetensors"), reference);
  EXPECT_FALSE(fs::exists(options.checkpoint_dir));  // Published: checkpoint removed.
  bool reported = false;
  for (const JobProgress& p : progress_) reported |= absl::StrContains(p.message, "worker lost");
  EXPECT_TRUE(reported);
}

TEST_F(JobRunnerTest, AResumedRunSkipsFinishedBlocksAndPublishesTheSameBytes) {
  const std::string reference = ReferenceOutput();
  JobRunnerOptions options;
  options.checkpoint_dir = MakeScratchDir() + "/ckpt";
  options.job_id = "job-1";
  const JobConfig config = Config();
  {
    // The first coordinator is stopped during block 2 (a shutdown).
    std::unique_ptr<JobRunner> first;
    first = std::make_unique<JobRunner>(
        config, Engines(1),
        [&](const JobProgress& p) {
          if (p.stage == JobStage::kMeasuring && p.block == 2) first->Cancel();
        },
        options);
    EXPECT_EQ(first->Run().status().code(), absl::StatusCode::kCancelled);
  }
  EXPECT_TRUE(fs::exists(options.checkpoint_dir));
  FakeEngineLog log;
  FakeBlockEngine engine(EngineOptions(), &log);
  JobRunner second(config, {&engine}, Record(), options);
  absl::StatusOr<JobSummary> summary = second.Run();
  ASSERT_TRUE(summary.ok()) << summary.status();
  // The block in progress at the cancel finished and was checkpointed; the
  // resumed run recomputes nothing finished: it starts at block 3, from the
  // checkpointed inputs.
  EXPECT_THAT(log.entries(), ElementsAre("start", "import 3", "measure 3", "quantize 3", "reset"));
  EXPECT_EQ(progress_.back().stage, JobStage::kDone);
  EXPECT_EQ(ReadFileOrDie(config.output_dir + "/model.safetensors"), reference);
}

}  // namespace
}  // namespace baq::coordinator
