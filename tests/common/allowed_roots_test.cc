// AllowedRoots against a real directory tree with symlinks in a scratch dir.
#include "common/allowed_roots.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "tests/testing/test_paths.h"

namespace baq {
namespace {

using ::testing::HasSubstr;

class AllowedRootsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = testing::MakeScratchDir();
    testing::WriteFileOrDie(base_ + "/models/opt/config.json", "{}");
    testing::WriteFileOrDie(base_ + "/data/calib.txt", "text");
    testing::WriteFileOrDie(base_ + "/secret/key.txt", "secret");
    ASSERT_EQ(mkdir((base_ + "/out").c_str(), 0755), 0);
    auto roots = AllowedRoots::Create({base_ + "/models", base_ + "/data", base_ + "/out"});
    ASSERT_TRUE(roots.ok()) << roots.status();
    roots_ = *roots;
  }

  void Link(const std::string& target, const std::string& link) {
    ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0) << link;
  }

  JobConfig Config() const {
    JobConfig c;
    c.model_dir = base_ + "/models/opt";
    c.output_dir = base_ + "/out/opt-3bit";  // Does not exist yet.
    c.calibration.files = {base_ + "/data/calib.txt"};
    return c;
  }

  std::string base_;
  AllowedRoots roots_;
};

TEST_F(AllowedRootsTest, AllowsPathsUnderTheRootsIncludingMissingOutput) {
  EXPECT_TRUE(roots_.CheckJob(Config()).ok()) << roots_.CheckJob(Config());
  EXPECT_TRUE(roots_.Check("output_dir", base_ + "/out/a/b/c").ok());
  EXPECT_TRUE(roots_.Check("output_dir", base_ + "/out").ok());
}

TEST_F(AllowedRootsTest, RejectsPathsOutsideTheRoots) {
  absl::Status s = roots_.Check("model_dir", base_ + "/secret");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model_dir '" + base_ + "/secret'"));
  // A sibling whose name extends a root's is not under it.
  ASSERT_EQ(mkdir((base_ + "/models2").c_str(), 0755), 0);
  EXPECT_EQ(roots_.Check("model_dir", base_ + "/models2").code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(AllowedRootsTest, ChecksTheEvalGateText) {
  JobConfig c = Config();
  c.eval_gate.text_file = base_ + "/secret/eval.txt";
  c.eval_gate.max_ppl = 20;
  absl::Status s = roots_.CheckJob(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()), HasSubstr("eval_gate.text_file"));
}

TEST_F(AllowedRootsTest, RejectsDotDotEscapes) {
  JobConfig c = Config();
  c.model_dir = base_ + "/models/../secret";
  absl::Status s = roots_.CheckJob(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model_dir"));
  // ".." below a directory that does not exist yet cannot be resolved safely.
  c = Config();
  c.output_dir = base_ + "/out/new/../../secret/x";
  s = roots_.CheckJob(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("output_dir"));
}

TEST_F(AllowedRootsTest, RejectsSymlinkEscapes) {
  // A symlink inside a root that points out of it, as the path itself and as
  // an ancestor of a file and of a not-yet-existing output.
  Link(base_ + "/secret", base_ + "/models/evil");
  Link(base_ + "/secret", base_ + "/out/evil");
  JobConfig c = Config();
  c.model_dir = base_ + "/models/evil";
  EXPECT_EQ(roots_.CheckJob(c).code(), absl::StatusCode::kPermissionDenied);
  c = Config();
  c.calibration.files = {base_ + "/models/evil/key.txt"};
  absl::Status s = roots_.CheckJob(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()), HasSubstr("calibration file"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(base_ + "/secret/key.txt"));
  c = Config();
  c.output_dir = base_ + "/out/evil/published";
  EXPECT_EQ(roots_.CheckJob(c).code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(AllowedRootsTest, RejectsDanglingSymlinks) {
  // Publishing would create the target outside the root.
  Link(base_ + "/secret/not-yet", base_ + "/out/dangling");
  absl::Status s = roots_.Check("output_dir", base_ + "/out/dangling");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()), HasSubstr("dangling symlink"));
}

TEST_F(AllowedRootsTest, AllowsSymlinksThatStayInsideARoot) {
  Link(base_ + "/models/opt", base_ + "/models/current");
  Link(base_ + "/models", base_ + "/data/models-link");  // Between two roots.
  JobConfig c = Config();
  c.model_dir = base_ + "/models/current";
  EXPECT_TRUE(roots_.CheckJob(c).ok());
  c.model_dir = base_ + "/data/models-link/opt";
  EXPECT_TRUE(roots_.CheckJob(c).ok());
}

TEST_F(AllowedRootsTest, RootsThemselvesMayBeSymlinks) {
  Link(base_ + "/models", base_ + "/models-alias");
  auto roots = AllowedRoots::Create({base_ + "/models-alias"});
  ASSERT_TRUE(roots.ok()) << roots.status();
  EXPECT_TRUE(roots->Check("model_dir", base_ + "/models/opt").ok());
}

TEST_F(AllowedRootsTest, RejectsRelativePaths) {
  EXPECT_EQ(roots_.Check("model_dir", "models/opt").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(roots_.Check("model_dir", "").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AllowedRootsTest, BadRootsAreInvalidArgument) {
  EXPECT_EQ(AllowedRoots::Create({base_ + "/missing"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AllowedRoots::Create({"relative"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AllowedRoots::Create({base_ + "/data/calib.txt"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AllowedRootsTest, NoRootsAllowsEverything) {
  AllowedRoots none;
  EXPECT_TRUE(none.empty());
  EXPECT_TRUE(none.Check("model_dir", "relative/is/fine/too").ok());
}

}  // namespace
}  // namespace baq
