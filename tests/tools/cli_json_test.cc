// The `baq` binary's contract with pipelines (issue 21 item 1, docs/cli.md):
// one exit code per outcome, and --output json on stdout — one object, or
// JSON lines for watch and submit --wait — with the documented fields, on
// success and on failure. Each exit code is produced by a real process; the
// binary costs ~0.5 s of CPU per start (LibTorch), so the runs are few.
// Exit code 1 (internal error) has no cheap honest trigger: exit_codes_test
// covers its mapping. The last test is a pipeline step end to end.
#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/testing/in_process_cluster.h"
#include "tests/testing/test_paths.h"
#include "tools/cli/exit_codes.h"

namespace baq::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

struct CliRun {
  int exit_code = -1;
  std::string out;  // stdout alone: what a pipeline parses.
  std::string err;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Quote(const std::string& s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

// Runs `baq args...` with stdout and stderr captured apart, stdin closed.
CliRun RunBaq(const std::vector<std::string>& args) {
  const std::string dir = baq::testing::MakeScratchDir();
  std::vector<std::string> quoted = {Quote(baq::testing::BinaryDir() + "/tools/cli/baq")};
  for (const std::string& a : args) quoted.push_back(Quote(a));
  const std::string cmd = absl::StrCat(absl::StrJoin(quoted, " "), " >", dir, "/out 2>", dir,
                                       "/err </dev/null");
  const int status = std::system(cmd.c_str());
  CliRun r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.out = ReadAll(dir + "/out");
  r.err = ReadAll(dir + "/err");
  return r;
}

// The one JSON object on stdout (fails the test if there is not exactly one).
nlohmann::json OneObject(const CliRun& r) {
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_TRUE(j.is_object()) << "stdout is not one JSON object:\n" << r.out << "\nstderr:\n" << r.err;
  return j.is_object() ? j : nlohmann::json::object();
}

// JSON lines (watch, submit --wait): every line an object.
std::vector<nlohmann::json> Lines(const CliRun& r) {
  std::vector<nlohmann::json> lines;
  for (absl::string_view l : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
    nlohmann::json j = nlohmann::json::parse(l, nullptr, false);
    EXPECT_TRUE(j.is_object()) << "not a JSON line: " << l;
    lines.push_back(std::move(j));
  }
  return lines;
}

void ExpectError(const nlohmann::json& j, int exit_code, const std::string& code) {
  EXPECT_EQ(j.value("ok", true), false) << j;
  ASSERT_TRUE(j.contains("error")) << j;
  EXPECT_EQ(j["error"].value("exit_code", -1), exit_code) << j;
  EXPECT_EQ(j["error"].value("code", ""), code) << j;
  EXPECT_TRUE(j["error"]["message"].is_string()) << j;
}

class CliJsonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(baq::testing::BinaryDir() + "/tools/cli/baq"))
        << "baq not built (target baq_cli_main)";
  }
  static std::string Fixture() { return baq::testing::SourceDir() + "/examples/opt-fixture"; }
  static std::string Calib() { return baq::testing::SourceDir() + "/examples/calibration.txt"; }
  // The first 4 KiB of Calib() (~1000 tokens) in `dir`: evaluating or
  // tokenizing all 1.1 MB of it would dominate the test.
  static std::string SmallText(const std::string& dir) {
    const std::string path = dir + "/small.txt";
    baq::testing::WriteFileOrDie(path, ReadAll(Calib()).substr(0, 4096));
    return path;
  }
};

// --module_objective: checked before any work; the service does not take it.
TEST_F(CliJsonTest, ModuleObjectiveIsRefusedWhereItDoesNotApply) {
  const std::string out = baq::testing::MakeScratchDir() + "/out";
  const std::vector<std::string> job = {"--json", "--model=" + Fixture(), "--calib=" + Calib(),
                                        "--out=" + out, "--allocation=module"};
  std::vector<std::string> args = {"quantize", "--module_objective=geomean"};
  args.insert(args.end(), job.begin(), job.end());
  CliRun r = RunBaq(args);
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  ExpectError(OneObject(r), kExitUsage, "INVALID_ARGUMENT");
  args = {"submit", "--module_objective=raw", "--coordinator=127.0.0.1:1"};
  args.insert(args.end(), job.begin(), job.end());
  r = RunBaq(args);
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  ExpectError(OneObject(r), kExitUsage, "INVALID_ARGUMENT");
  EXPECT_FALSE(fs::exists(out));
}

// 0, with --version's JSON; 2, 3 and 7 cost no model load.
TEST_F(CliJsonTest, VersionUsageInputRefusedAndUnreachable) {
  CliRun r = RunBaq({"--version", "--output=json"});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  nlohmann::json j = OneObject(r);
  EXPECT_EQ(j.value("ok", false), true);
  EXPECT_FALSE(j.value("version", "").empty()) << j;
  EXPECT_FALSE(j.value("git_revision", "").empty()) << j;

  r = RunBaq({"eval", "--json", "--text=" + Calib()});  // No --model.
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  ExpectError(OneObject(r), kExitUsage, "INVALID_ARGUMENT");

  r = RunBaq({"inspect", "--output=json", "/nonexistent/baq-output"});
  EXPECT_EQ(r.exit_code, kExitInputRefused) << r.err;
  ExpectError(OneObject(r), kExitInputRefused, "NOT_FOUND");

  // Nothing listens on port 1; the channel's retries may outlast the deadline.
  r = RunBaq({"list", "--json", "--coordinator=127.0.0.1:1", "--rpc_timeout_s=1"});
  EXPECT_EQ(r.exit_code, kExitUnavailable) << r.err;
  j = OneObject(r);
  EXPECT_EQ(j["error"].value("exit_code", -1), kExitUnavailable) << j;
  EXPECT_THAT(j["error"].value("code", ""), ::testing::AnyOf("UNAVAILABLE", "DEADLINE_EXCEEDED"));
  EXPECT_THAT(j["error"].value("message", ""), HasSubstr("coordinator 127.0.0.1:1"));
}

// 5: local quantize whose gate (perplexity <= 1) cannot pass; RTN keeps it cheap.
TEST_F(CliJsonTest, FailedGateExitsFiveWithTheGateNumbers) {
  const std::string scratch = baq::testing::MakeScratchDir();
  const std::string out = scratch + "/out";
  const std::string text = SmallText(scratch);
  CliRun r = RunBaq({"quantize", "--output=json", "--model=" + Fixture(), "--calib=" + text,
                     "--method=rtn", "--bits=4", "--nsamples=2", "--seqlen=32", "--threads=1",
                     "--eval_gate_data=" + text, "--eval_gate_max_ppl=1",
                     "--eval_gate_seqlen=32", "--out=" + out});
  EXPECT_EQ(r.exit_code, kExitGateFailed) << r.err;
  const nlohmann::json j = OneObject(r);
  ExpectError(j, kExitGateFailed, "FAILED_PRECONDITION");
  EXPECT_EQ(j["eval_gate"].value("passed", true), false) << j;
  EXPECT_EQ(j["eval_gate"].value("limit", 0.0), 1.0) << j;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(r.err.find("elapsed"), std::string::npos) << "progress without a terminal:\n" << r.err;
}

// 4 and 6 against a coordinator and one CPU worker in this process.
TEST_F(CliJsonTest, FailedJobExitsFourAndCancelledJobSix) {
  auto cluster = baq::testing::InProcessCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  ASSERT_TRUE((*cluster)->AddWorker().ok());
  const std::string coordinator = "--coordinator=" + (*cluster)->address();
  const std::string scratch = baq::testing::MakeScratchDir();

  // A model whose weights are cut short: the coordinator accepts the job
  // (config.json is fine), the worker fails it.
  const fs::path model = fs::path(scratch) / "model";
  fs::copy(Fixture(), model);
  fs::permissions(model, fs::perms::owner_all);
  for (const auto& e : fs::directory_iterator(model)) {
    fs::permissions(e.path(), fs::perms::owner_read | fs::perms::owner_write);
  }
  fs::resize_file(model / "model.safetensors", fs::file_size(model / "model.safetensors") / 2);
  CliRun r = RunBaq({"submit", "--wait", "--json", coordinator, "--model=" + model.string(),
                     "--calib=" + SmallText(scratch), "--method=rtn", "--bits=4", "--nsamples=2",
                     "--seqlen=32", "--out=" + scratch + "/out"});
  EXPECT_EQ(r.exit_code, kExitJobFailed) << r.out << r.err;
  std::vector<nlohmann::json> lines = Lines(r);
  ASSERT_GE(lines.size(), 2u) << r.out;
  EXPECT_EQ(lines.front().value("event", ""), "submitted");
  const std::string id = lines.front().value("job_id", "");
  EXPECT_FALSE(id.empty());
  for (size_t i = 1; i + 1 < lines.size(); ++i) {
    EXPECT_EQ(lines[i].value("event", ""), "progress") << lines[i];
    EXPECT_EQ(lines[i].value("job_id", ""), id) << lines[i];
  }
  EXPECT_EQ(lines.back()["error"].value("exit_code", -1), kExitJobFailed) << lines.back();

  r = RunBaq({"status", "--json", coordinator, id});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  const nlohmann::json job = OneObject(r)["job"];
  EXPECT_EQ(job.value("id", ""), id);
  EXPECT_EQ(job.value("state", ""), "failed");
  EXPECT_FALSE(job.value("error", "").empty()) << job;
  for (const char* field : {"progress", "error_code", "model_dir", "output_dir", "target_bits",
                            "tenant", "priority", "labels", "queue_position", "summary",
                            "create_time_unix_ms", "end_time_unix_ms"}) {
    EXPECT_TRUE(job.contains(field)) << field << " missing: " << job;
  }

  // 6: a job cancelled while queued or running, then watched.
  JobConfig config;
  config.model_dir = Fixture();
  config.output_dir = scratch + "/out-cancelled";
  config.calibration.files = {SmallText(scratch)};
  config.calibration.num_samples = 2;
  config.calibration.seqlen = 32;
  config.quant.target_bits = 3;
  auto submitted = (*cluster)->jobs().Submit("cli-json-cancel", config);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  ASSERT_TRUE((*cluster)->jobs().Cancel(submitted->id).ok());
  r = RunBaq({"watch", "--output=json", coordinator, submitted->id});
  EXPECT_EQ(r.exit_code, kExitCancelled) << r.out << r.err;
  lines = Lines(r);
  ASSERT_FALSE(lines.empty());
  ExpectError(lines.back(), kExitCancelled, "CANCELLED");
}

// What a pipeline step does (issue 21): submit, watch, status, list and eval,
// reading nothing but JSON and exit codes.
TEST_F(CliJsonTest, PipelineDrivesSubmitWatchStatusEvalThroughJson) {
  auto cluster = baq::testing::InProcessCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  ASSERT_TRUE((*cluster)->AddWorker().ok());
  const std::string coordinator = "--coordinator=" + (*cluster)->address();
  const std::string scratch = baq::testing::MakeScratchDir();
  const std::string text = SmallText(scratch);

  CliRun r = RunBaq({"submit", "--json", coordinator, "--model=" + Fixture(), "--calib=" + text,
                     "--method=rtn", "--bits=4", "--nsamples=2", "--seqlen=32",
                     "--request_id=pipeline-run-1", "--out=" + scratch + "/out"});
  ASSERT_EQ(r.exit_code, kExitOk) << r.out << r.err;
  const std::string id = OneObject(r)["job"].value("id", "");
  ASSERT_FALSE(id.empty()) << r.out;

  r = RunBaq({"watch", "--json", coordinator, id});
  ASSERT_EQ(r.exit_code, kExitOk) << r.out << r.err;
  const std::vector<nlohmann::json> lines = Lines(r);
  ASSERT_FALSE(lines.empty());
  const nlohmann::json& last = lines.back();
  EXPECT_EQ(last.value("ok", false), true) << last;
  EXPECT_EQ(last["job"].value("state", ""), "succeeded") << last;
  const std::string output_dir = last["job"]["summary"].value("output_dir", "");
  EXPECT_EQ(last["job"]["summary"].value("achieved_bits", 0.0), 4.0) << last;

  r = RunBaq({"status", "--json", coordinator, id});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_EQ(OneObject(r)["job"].value("state", ""), "succeeded");
  r = RunBaq({"list", "--json", coordinator});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  const nlohmann::json jobs = OneObject(r)["jobs"];
  ASSERT_EQ(jobs.size(), 1u) << jobs;
  EXPECT_EQ(jobs[0].value("id", ""), id);

  r = RunBaq({"eval", "--json", "--model=" + output_dir, "--text=" + text, "--seqlen=32",
              "--max_windows=2"});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  const nlohmann::json eval = OneObject(r);
  EXPECT_GT(eval.value("perplexity", 0.0), 1.0) << eval;
  EXPECT_EQ(eval.value("windows", 0), 2);
  EXPECT_EQ(eval.value("seqlen", 0), 32);
  EXPECT_EQ(eval.value("tokens", 0), 64);
}

}  // namespace
}  // namespace baq::cli
