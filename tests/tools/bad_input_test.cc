// Bad input end to end (issue 7 item 6): the real `baq quantize` binary on
// corrupted copies of the OPT fixture, made in a temp dir. Each case must end
// in a clear error that names the culprit, exit status 1 (no crash), and
// nothing published: no --out, no hidden temp dir left next to it. The exit
// status is 3 (input refused, docs/cli.md) for a refused input, 4 (job
// failed) for a disk that fills up while writing.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/failpoint.h"
#include "nlohmann/json.hpp"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_paths.h"
#include "tools/cli/exit_codes.h"

namespace baq {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteAll(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Overwrites the first `count` float16 elements of tensor `name` in a
// safetensors file with `bits` (0x7E00 NaN, 0x7C00 +Inf).
void PoisonTensor(const fs::path& file, const std::string& name, uint16_t bits, int count) {
  std::string bytes = ReadAll(file);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, header_len));
  ASSERT_TRUE(header.contains(name)) << name;
  ASSERT_EQ(header[name]["dtype"], "F16");
  const uint64_t begin = 8 + header_len + header[name]["data_offsets"][0].get<uint64_t>();
  for (int i = 0; i < count; ++i) std::memcpy(&bytes[begin + 2 * i], &bits, 2);
  WriteAll(file, bytes);
}

// A corrupted copy of the fixture plus the flags and environment of one run.
struct CorruptedInput {
  fs::path model;  // The copy; the case corrupts it.
  fs::path calib;  // A small, valid calibration file.
  std::vector<std::string> extra_flags;
  std::vector<std::string> env;
};

struct BadInputCase {
  std::string name;
  std::function<void(CorruptedInput&)> corrupt;
  // All must appear in the error output.
  std::vector<std::string> expected;
  bool needs_failpoints = false;
  int exit_code = cli::kExitInputRefused;
};

void PrintTo(const BadInputCase& c, std::ostream* os) { *os << c.name; }

class BadInputTest : public ::testing::TestWithParam<BadInputCase> {};

TEST_P(BadInputTest, FailsWithClearErrorAndPublishesNothing) {
  const BadInputCase& c = GetParam();
  if (!testing::HaveSharedData()) GTEST_SKIP() << "no shared fixtures";
  if (c.needs_failpoints && !failpoint::Enabled()) {
    GTEST_SKIP() << "built without BAQ_ENABLE_FAILPOINTS";
  }
  const std::string baq = testing::BinaryDir() + "/tools/cli/baq";
  ASSERT_TRUE(fs::exists(baq)) << baq << " not built (target baq_cli_main)";
  const fs::path scratch = testing::MakeScratchDir();
  CorruptedInput setup;
  setup.model = scratch / "model";
  fs::copy(testing::SharedDataDir() + "/models/opt-fixture", setup.model);
  // The fixture is read-only; its copy must not be.
  fs::permissions(setup.model, fs::perms::owner_all);
  for (const auto& e : fs::directory_iterator(setup.model)) {
    fs::permissions(e.path(), fs::perms::owner_read | fs::perms::owner_write);
  }
  setup.calib = scratch / "calib.txt";
  WriteAll(setup.calib, testing::SharedCorpusPrefix(16 * 1024));
  c.corrupt(setup);
  if (HasFatalFailure()) return;

  const fs::path out = scratch / "out";
  std::vector<std::string> argv = {baq,
                                   "quantize",
                                   "--model=" + setup.model.string(),
                                   "--calib=" + setup.calib.string(),
                                   "--method=rtn",
                                   "--bits=4",
                                   "--nsamples=2",
                                   "--seqlen=32",
                                   "--threads=1",
                                   "--out=" + out.string()};
  argv.insert(argv.end(), setup.extra_flags.begin(), setup.extra_flags.end());
  testing::ProcessResult r = testing::RunProcess(argv, setup.env, (scratch / "log").string());
  ASSERT_TRUE(r.started);
  EXPECT_EQ(r.signal, 0) << "crashed:\n" << r.output;
  EXPECT_EQ(r.exit_code, c.exit_code) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "baq: error:")) << r.output;
  for (const std::string& want : c.expected) {
    EXPECT_TRUE(absl::StrContains(r.output, want)) << "no \"" << want << "\" in:\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(out)) << "published despite the error";
  for (const auto& e : fs::directory_iterator(scratch)) {
    EXPECT_FALSE(absl::StartsWith(e.path().filename().string(), ".out."))
        << e.path() << " left behind";
  }
}

const BadInputCase kCases[] = {
    {"TruncatedSafetensors",
     [](CorruptedInput& s) {
       const fs::path f = s.model / "model.safetensors";
       fs::resize_file(f, fs::file_size(f) / 2);
     },
     {"model.safetensors: tensor", "out of bounds"}},
    {"MalformedSafetensorsHeader",
     [](CorruptedInput& s) {
       const fs::path f = s.model / "model.safetensors";
       std::string bytes = ReadAll(f);
       const uint64_t huge = uint64_t{1} << 40;
       std::memcpy(bytes.data(), &huge, 8);
       WriteAll(f, bytes);
     },
     {"model.safetensors: header length 1099511627776 exceeds the limit"}},
    {"GarbageSafetensorsJson",
     [](CorruptedInput& s) {
       const fs::path f = s.model / "model.safetensors";
       std::string bytes = ReadAll(f);
       bytes[8] = '[';  // The header must be a JSON object.
       bytes[9] = '!';
       WriteAll(f, bytes);
     },
     {"model.safetensors: header not valid JSON"}},
    {"ConfigLiesAboutFfnShapes",
     [](CorruptedInput& s) {
       const fs::path f = s.model / "config.json";
       nlohmann::json config = nlohmann::json::parse(ReadAll(f));
       config["ffn_dim"] = 2048;
       WriteAll(f, config.dump(2));
     },
     {"layers.0.fc1.weight has shape [1536, 384]", "config.json implies [2048, 384]"}},
    {"ConfigLiesAboutHiddenSize",
     [](CorruptedInput& s) {
       const fs::path f = s.model / "config.json";
       nlohmann::json config = nlohmann::json::parse(ReadAll(f));
       config["hidden_size"] = 768;
       config["word_embed_proj_dim"] = 768;
       WriteAll(f, config.dump(2));
     },
     {"embed_tokens.weight has shape [8192, 384]", "config.json implies [8192, 768]"}},
    {"ConfigInconsistent",
     [](CorruptedInput& s) {
       const fs::path f = s.model / "config.json";
       nlohmann::json config = nlohmann::json::parse(ReadAll(f));
       config["hidden_size"] = 512;
       WriteAll(f, config.dump(2));
     },
     {"config.json", "does not divide hidden_size 512"}},
    {"NanWeights",
     [](CorruptedInput& s) {
       PoisonTensor(s.model / "model.safetensors", "model.decoder.layers.0.fc1.weight", 0x7E00, 3);
     },
     {"fc1", "NaN or Inf"}},
    {"InfWeights",
     [](CorruptedInput& s) {
       PoisonTensor(s.model / "model.safetensors", "model.decoder.layers.3.self_attn.q_proj.weight",
                    0x7C00, 1);
     },
     {"q_proj", "NaN or Inf"}},
    {"MissingTokenizer", [](CorruptedInput& s) { fs::remove(s.model / "tokenizer.json"); },
     {"NOT_FOUND", "tokenizer.json"}},
    {"MissingConfig", [](CorruptedInput& s) { fs::remove(s.model / "config.json"); },
     {"NOT_FOUND", "config.json"}},
    {"EmptyCalibration", [](CorruptedInput& s) { WriteAll(s.calib, ""); },
     {"calib.txt is empty"}},
    {"TooShortCalibration", [](CorruptedInput& s) { WriteAll(s.calib, "To be, or not to be.\n"); },
     {"calib.txt", "more than window_tokens = 32 tokens"}},
    {"PickleCheckpointRefused",
     [](CorruptedInput& s) {
       fs::remove(s.model / "model.safetensors");
       // A pickle's first bytes (protocol 2); never opened, only refused.
       WriteAll(s.model / "pytorch_model.bin", std::string("\x80\x02}q\x00.", 6));
     },
     {"found pytorch_model.bin", "pickle checkpoints are not supported"}},
    {"DiskFullWhileWriting",
     [](CorruptedInput& s) { s.env.push_back("BAQ_FAILPOINTS=safetensors_writer.add=enospc@3"); },
     {"No space left on device"},
     /*needs_failpoints=*/true,
     cli::kExitJobFailed},
};

INSTANTIATE_TEST_SUITE_P(Fixture, BadInputTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<BadInputCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace baq
