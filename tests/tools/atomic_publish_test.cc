// Output publishing is atomic (issue 7 item 5): `baq quantize` (local mode,
// the real binary) is killed at randomized points — a failpoint that
// SIGKILLs the process at a step of publishing, or a SIGKILL from outside
// after a random delay — and --out must then be either absent (the state
// before the run; the CLI never overwrites) or the complete output, equal to
// an undisturbed reference run. Leftover hidden temp dirs must not stop the
// next run. Seeded: the same kill points every run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/failpoint.h"
#include "nlohmann/json.hpp"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_paths.h"

namespace baq {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kSeed = 20261125;
// Half failpoint crashes, half timed SIGKILLs; each run is ~6 s of CPU.
constexpr int kIterations = 8;

// Every failpoint on the publish path. Those reached once per file or per
// tensor get a random @N, so later hits are exercised too.
const std::vector<std::string>& PublishFailpoints() {
  static const auto* names = new std::vector<std::string>{
      "output_assembler.add_block",        "output_assembler.before_write_file",
      "output_assembler.after_write_file", "output_assembler.before_commit",
      "safetensors_writer.add",            "safetensors_writer.before_write",
      "safetensors_writer.after_chunk",    "safetensors_writer.before_fsync",
      "safetensors_writer.before_rename",  "safetensors_writer.after_rename",
      "atomic_output_dir.before_fsync",    "atomic_output_dir.before_rename",
      "atomic_output_dir.after_rename"};
  return *names;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// quant_report.json records wall times (per layer, per stage); everything
// else is deterministic. Returns the report without them.
nlohmann::json ReportWithoutTimes(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return j;
  j.erase("stage_seconds");
  j.erase("wall_seconds");
  if (j.contains("layers")) {
    for (auto& layer : j["layers"]) layer.erase("seconds");
  }
  return j;
}

// Relative path -> contents of every entry below `root` (directories map to "<dir>").
std::map<std::string, std::string> Tree(const fs::path& root) {
  std::map<std::string, std::string> tree;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    const std::string rel = fs::relative(e.path(), root).string();
    tree[rel] = e.is_directory() ? "<dir>" : ReadAll(e.path());
  }
  return tree;
}

// Empty if `out` equals the reference output; else what differs.
std::string CompareWithReference(const fs::path& out, const fs::path& reference) {
  const auto got = Tree(out);
  const auto want = Tree(reference);
  std::string diff;
  for (const auto& [name, bytes] : want) {
    auto it = got.find(name);
    if (it == got.end()) {
      absl::StrAppend(&diff, "missing ", name, "; ");
    } else if (absl::EndsWith(name, "quant_report.json")) {
      if (ReportWithoutTimes(it->second) != ReportWithoutTimes(bytes)) {
        absl::StrAppend(&diff, name, " differs; ");
      }
    } else if (it->second != bytes) {
      absl::StrAppend(&diff, name, " differs (", it->second.size(), " vs ", bytes.size(),
                      " bytes); ");
    }
  }
  for (const auto& [name, bytes] : got) {
    if (want.count(name) == 0) absl::StrAppend(&diff, "unexpected ", name, "; ");
  }
  return diff;
}

class AtomicPublishTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HaveSharedData()) GTEST_SKIP() << "no shared fixtures";
    if (!failpoint::Enabled()) GTEST_SKIP() << "built without BAQ_ENABLE_FAILPOINTS";
    baq_ = testing::BinaryDir() + "/tools/cli/baq";
    ASSERT_TRUE(fs::exists(baq_)) << baq_ << " not built (target baq_cli_main)";
    scratch_ = testing::MakeScratchDir();
    calib_ = scratch_ + "/calib.txt";
    testing::WriteFileOrDie(calib_, testing::SharedCorpusPrefix(16 * 1024));
  }

  // Two output formats: two safetensors files and two directories to publish.
  testing::ProcessResult Quantize(const std::string& out, std::vector<std::string> env,
                                  absl::Duration kill_after = absl::InfiniteDuration()) {
    return testing::RunProcess(
        {baq_, "quantize", "--model=" + testing::SharedDataDir() + "/models/opt-fixture",
         "--calib=" + calib_, "--method=rtn", "--bits=4", "--nsamples=2", "--seqlen=32",
         "--format=fake-quant,packed", "--threads=1", "--out=" + out},
        env, out + ".log", kill_after);
  }

  std::string baq_;
  std::string scratch_;
  std::string calib_;
};

TEST_F(AtomicPublishTest, KilledAnywhereLeavesNothingOrTheCompleteOutput) {
  const std::string reference = scratch_ + "/reference";
  testing::ProcessResult ref = Quantize(reference, {});
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  ASSERT_TRUE(fs::exists(reference + "/packed/model.safetensors"));

  std::mt19937 rng(kSeed);
  const std::vector<std::string>& failpoints = PublishFailpoints();
  std::string absent_out;  // An --out a killed run left absent, for the rerun below.
  int complete = 0, absent = 0;
  for (int i = 0; i < kIterations; ++i) {
    const std::string out = absl::StrCat(scratch_, "/out", i);
    std::vector<std::string> env;
    absl::Duration kill_after = absl::InfiniteDuration();
    std::string how;
    if (i % 2 == 0) {
      const std::string& name = failpoints[rng() % failpoints.size()];
      const int hit = 1 + static_cast<int>(rng() % 3);
      env.push_back(absl::StrCat("BAQ_FAILPOINTS=", name, "=crash@", hit));
      how = absl::StrCat("failpoint ", name, "@", hit);
    } else {
      // Anywhere in the run, publishing included (it is the last ~10%).
      std::uniform_real_distribution<double> frac(0.3, 1.1);
      kill_after = ref.wall * frac(rng);
      how = absl::StrCat("SIGKILL after ", absl::FormatDuration(kill_after));
    }
    testing::ProcessResult r = Quantize(out, env, kill_after);
    SCOPED_TRACE(absl::StrCat("iteration ", i, ": ", how));
    ASSERT_TRUE(r.started);
    // Either killed, or it finished before the kill point (@N past the last hit).
    EXPECT_TRUE(r.signal == SIGKILL || r.exit_code == 0)
        << "exit " << r.exit_code << " signal " << r.signal << "\n" << r.output;
    if (fs::exists(out)) {
      EXPECT_EQ(CompareWithReference(out, reference), "") << "partial output published";
      ++complete;
    } else {
      EXPECT_NE(r.exit_code, 0) << "exited 0 without publishing";
      ++absent;
      if (absent_out.empty()) absent_out = out;
    }
    std::printf("%s: %s\n", how.c_str(), fs::exists(out) ? "complete output" : "no output");
  }
  std::printf("%d complete, %d absent of %d killed runs\n", complete, absent, kIterations);

  // A killed run may leave a hidden `.outN.tmp-*` sibling; it is never read,
  // and the next run into the same --out publishes normally.
  ASSERT_FALSE(absent_out.empty()) << "no run was killed before publishing";
  testing::ProcessResult again = Quantize(absent_out, {});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(CompareWithReference(absent_out, reference), "");
}

TEST_F(AtomicPublishTest, FailedPublishLeavesNoTempDirectories) {
  // An error (not a crash) at the last step before the rename: the run
  // fails, --out is absent and the temp dir is removed on the way out.
  const std::string out = scratch_ + "/failed";
  testing::ProcessResult r =
      Quantize(out, {"BAQ_FAILPOINTS=atomic_output_dir.before_rename=error"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("failpoint atomic_output_dir.before_rename"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(out));
  for (const auto& e : fs::directory_iterator(scratch_)) {
    EXPECT_FALSE(absl::StartsWith(e.path().filename().string(), ".failed."))
        << e.path() << " left behind";
  }
}

}  // namespace
}  // namespace baq
