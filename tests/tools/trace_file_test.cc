// `baq quantize --trace_file` (docs/performance.md "Profiling a run"): the
// real binary on the bundled OPT fixture writes a Chrome trace with the
// process labelled, one measure and one quantize span per block, and the
// engine's stages (block weight load, calibration forward chunks, Hessian
// accumulation, BAQ pass 1, per-layer quantization) nested inside them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_paths.h"

namespace baq {
namespace {

using ::testing::IsSupersetOf;

constexpr int kFixtureBlocks = 6;  // examples/opt-fixture

// Runs `baq args...` (output to files in a scratch dir); the exit code.
int RunBaq(const std::vector<std::string>& args) {
  const std::string log = testing::MakeScratchDir() + "/log";
  const std::string cmd = absl::StrCat(testing::BinaryDir(), "/tools/cli/baq ",
                                       absl::StrJoin(args, " "), " >", log, " 2>&1 </dev/null");
  const int status = std::system(cmd.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ADD_FAILURE() << cmd << "\n" << testing::ReadFileOrDie(log);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::vector<std::string> QuantizeArgs(const std::string& scratch) {
  return {"quantize",
          "--model=" + testing::SourceDir() + "/examples/opt-fixture",
          "--calib=" + testing::SourceDir() + "/examples/calibration.txt",
          "--method=baq",
          "--bits=3",
          "--nsamples=4",
          "--seqlen=32",
          "--threads=1",
          "--progress=false",
          "--out=" + scratch + "/out"};
}

TEST(TraceFileTest, QuantizeWritesPerBlockStages) {
  const std::string scratch = testing::MakeScratchDir();
  const std::string trace = scratch + "/trace.json";
  std::vector<std::string> args = QuantizeArgs(scratch);
  args.push_back("--trace_file=" + trace);
  ASSERT_EQ(RunBaq(args), 0);

  const nlohmann::json doc = nlohmann::json::parse(testing::ReadFileOrDie(trace));
  std::string process;
  std::map<std::string, std::set<int64_t>> blocks_of;  // span name -> blocks
  std::set<std::string> names;
  for (const nlohmann::json& e : doc.at("traceEvents")) {
    if (e.at("ph") == "M" && e.at("name") == "process_name") process = e["args"]["name"];
    if (e.at("ph") != "X") continue;
    names.insert(e.at("name"));
    EXPECT_GE(e.at("dur").get<int64_t>(), 0);
    if (e["args"].contains("block")) {
      blocks_of[e.at("name")].insert(e["args"]["block"].get<int64_t>());
    }
  }
  EXPECT_EQ(process, "baq quantize");
  std::set<int64_t> all_blocks;
  for (int b = 0; b < kFixtureBlocks; ++b) all_blocks.insert(b);
  EXPECT_EQ(blocks_of["measure"], all_blocks);
  EXPECT_EQ(blocks_of["quantize"], all_blocks);
  EXPECT_EQ(blocks_of["load_block"], all_blocks);
  EXPECT_EQ(blocks_of["quantize_layer"], all_blocks);
  EXPECT_THAT(names,
              IsSupersetOf({"start", "forward", "forward_chunk", "hessian_add", "measure_losses",
                            "measure_layer", "forward_quantized", "allocate_block"}));
}

}  // namespace
}  // namespace baq
