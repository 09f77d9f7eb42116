// tests/testing/tiny_model.h
//
// A tiny random LLaMA for engine tests whose subject is not a model's
// numerics (byte identity across devices, spilling, measurement reuse):
// tools/scale/make_random_model.py writes kTinyLlamaBlocks decoder blocks of
// width 64 (4 heads, MLP 128; the OPT fixture's tokenizer) into a scratch
// dir once per test process, so a whole BAQ job takes well under a second
// on two CPU cores instead of tens of seconds on the OPT fixture. The
// script needs no torch (it falls back to Python's generator), so CI makes
// the same bytes. Header-only; call from one thread (the first call writes).
//
// TinyOpt350mDir() is the same for OPT-350M's shape (post-LayerNorm, 32-wide
// embeddings with project_in/project_out around 64-wide blocks).
//
// Example:
//   const std::string model = TinyLlamaDir();
//   ASSERT_FALSE(model.empty()) << "make_random_model.py failed";
#ifndef BAQ_TESTS_TESTING_TINY_MODEL_H_
#define BAQ_TESTS_TESTING_TINY_MODEL_H_

#include <cstdio>
#include <string>
#include <vector>

#include "tests/testing/subprocess.h"
#include "tests/testing/test_paths.h"

namespace baq::testing {

inline constexpr int kTinyLlamaBlocks = 4;
inline constexpr int kTinyLlamaLinearLayers = 7;  // Per block: q, k, v, o, gate, up, down.

// The model's directory; "" (and the script's output on stderr) if it could
// not be written.
inline const std::string& TinyLlamaDir() {
  static const std::string dir = [] {
    const std::string out = MakeScratchDir() + "/tiny-llama";
    ProcessResult r = RunProcess(
        {"/usr/bin/env", "python3", SourceDir() + "/tools/scale/make_random_model.py", "--out",
         out, "--hidden", "64", "--intermediate", "128", "--heads", "4", "--blocks",
         std::to_string(kTinyLlamaBlocks), "--device", "cpu"},
        {}, out + ".log");
    if (r.exit_code != 0) {
      std::fprintf(stderr, "make_random_model.py failed:\n%s\n", r.output.c_str());
      return std::string();
    }
    return out;
  }();
  return dir;
}

inline constexpr int kTinyOptBlocks = 2;

// make_random_model.py --family opt: kTinyOptBlocks blocks of width 64
// (4 heads, FFN 128), the OPT fixture's tokenizer, plus `extra` arguments;
// written once per process into <scratch>/<name>; "" on failure.
inline std::string MakeTinyOpt(const std::string& name, const std::vector<std::string>& extra) {
  const std::string out = MakeScratchDir() + "/" + name;
  std::vector<std::string> args = {
      "/usr/bin/env", "python3", SourceDir() + "/tools/scale/make_random_model.py", "--out", out,
      "--family", "opt", "--hidden", "64", "--intermediate", "128", "--heads", "4", "--blocks",
      std::to_string(kTinyOptBlocks), "--device", "cpu"};
  args.insert(args.end(), extra.begin(), extra.end());
  ProcessResult r = RunProcess(args, {}, out + ".log");
  if (r.exit_code != 0) {
    std::fprintf(stderr, "make_random_model.py failed:\n%s\n", r.output.c_str());
    return std::string();
  }
  return out;
}

// OPT-350M's shape: post-LayerNorm, 32-wide embeddings with project_in /
// project_out around the 64-wide blocks.
inline const std::string& TinyOpt350mDir() {
  static const std::string dir = MakeTinyOpt("tiny-opt350m", {"--post-ln", "--proj-dim", "32"});
  return dir;
}

// Every other OPT size's shape (125M, 1.3B ... 66B): pre-LayerNorm with a
// final LayerNorm, no projections.
inline const std::string& TinyOptPreLnDir() {
  static const std::string dir = MakeTinyOpt("tiny-opt-preln", {});
  return dir;
}

}  // namespace baq::testing

#endif  // BAQ_TESTS_TESTING_TINY_MODEL_H_
