// tools/cli/exit_codes: every canonical code and every explicit outcome maps
// to the exit code docs/cli.md promises, and the JSON error object carries it.
#include "tools/cli/exit_codes.h"

#include <gtest/gtest.h>

#include "coordinator/eval_gate.h"
#include "tools/cli/cli_output.h"

namespace baq::cli {
namespace {

TEST(ExitCodesTest, CanonicalCodes) {
  using C = absl::StatusCode;
  const struct {
    C code;
    int exit_code;
  } kCases[] = {
      {C::kOk, 0},
      {C::kInvalidArgument, 3},
      {C::kNotFound, 3},
      {C::kUnimplemented, 3},
      {C::kFailedPrecondition, 3},
      {C::kOutOfRange, 3},
      {C::kAlreadyExists, 3},
      {C::kCancelled, 6},
      {C::kUnavailable, 7},
      {C::kDeadlineExceeded, 7},
      {C::kInternal, 1},
      {C::kUnknown, 1},
      {C::kDataLoss, 1},
      {C::kResourceExhausted, 1},
      {C::kAborted, 1},
      {C::kPermissionDenied, 1},
      {C::kUnauthenticated, 1},
  };
  for (const auto& c : kCases) {
    EXPECT_EQ(ExitCodeFor(absl::Status(c.code, c.code == C::kOk ? "" : "x")), c.exit_code)
        << absl::StatusCodeToString(c.code);
  }
}

TEST(ExitCodesTest, TheConstantsAreDistinctAndDocumented) {
  EXPECT_EQ(kExitOk, 0);
  EXPECT_EQ(kExitInternal, 1);
  EXPECT_EQ(kExitUsage, 2);
  EXPECT_EQ(kExitInputRefused, 3);
  EXPECT_EQ(kExitJobFailed, 4);
  EXPECT_EQ(kExitGateFailed, 5);
  EXPECT_EQ(kExitCancelled, 6);
  EXPECT_EQ(kExitUnavailable, 7);
}

TEST(ExitCodesTest, ExplicitOutcomeWinsOverTheCanonicalCode) {
  EXPECT_EQ(ExitCodeFor(UsageError("needs --model")), kExitUsage);
  EXPECT_EQ(UsageError("x").code(), absl::StatusCode::kInvalidArgument);
  // A watched job that failed on a refused model is a failed job.
  EXPECT_EQ(ExitCodeFor(WithExitCode(absl::InvalidArgumentError("bad model"), kExitJobFailed)),
            kExitJobFailed);
}

TEST(ExitCodesTest, FailedGateIsFive) {
  coordinator::EvalGateResult gate;
  gate.ppl = 30;
  gate.limit_kind = "max_ppl";
  gate.limit = 10;
  const absl::Status s = coordinator::GateFailedError(gate);
  ASSERT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);  // Would be 3 by its code.
  EXPECT_EQ(ExitCodeFor(s), kExitGateFailed);
  const nlohmann::json j = ErrorJson(s);
  EXPECT_EQ(j["error"]["exit_code"], kExitGateFailed);
  EXPECT_EQ(j["eval_gate"]["ppl"], 30.0);
}

TEST(ExitCodesTest, ErrorJsonHasTheDocumentedFields) {
  const nlohmann::json j = ErrorJson(absl::UnavailableError("coordinator 127.0.0.1:1: down"));
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["code"], "UNAVAILABLE");
  EXPECT_EQ(j["error"]["message"], "coordinator 127.0.0.1:1: down");
  EXPECT_EQ(j["error"]["exit_code"], kExitUnavailable);
}

}  // namespace
}  // namespace baq::cli
