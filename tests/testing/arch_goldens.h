// tests/testing/arch_goldens.h
//
// The architecture goldens that tools/golden/make_arch_goldens.py writes
// (one tiny model per family, with transformers' outputs), as the parameter
// list (and directories) of the suites that run over all of them: ArchGoldenTest (the blocks
// against the golden) and ArchQuantizeTest (the whole CLI job). One list, so
// a family added to the generator is added to both. Header-only.
//
// Example:
//   INSTANTIATE_TEST_SUITE_P(Families, ArchGoldenTest,
//                            ::testing::ValuesIn(kArchGoldenFamilies),
//                            ArchGoldenFamilyName);
#ifndef BAQ_TESTS_TESTING_ARCH_GOLDENS_H_
#define BAQ_TESTS_TESTING_ARCH_GOLDENS_H_

#include <gtest/gtest.h>

#include <string>

#include "tests/testing/test_paths.h"

namespace baq::testing {

// The family's golden directory (config, safetensors, tokenizer, outputs).
inline std::string ArchGoldenDir(const std::string& family) {
  return SourceDir() + "/tests/worker/model/testdata/arch/" + family;
}

// In tools/golden/make_arch_goldens.py's order.
inline constexpr const char* kArchGoldenFamilies[] = {
    "llama3",      "qwen2_yarn", "phi3_longrope",   "qwen3",     "mistral_head_dim", "gemma2",
    "gemma3_text", "mixtral",    "mixtral_starved", "qwen2_moe", "qwen3_moe"};

// The test name suffix: the family itself.
inline std::string ArchGoldenFamilyName(const ::testing::TestParamInfo<const char*>& info) {
  return std::string(info.param);
}

}  // namespace baq::testing

#endif  // BAQ_TESTS_TESTING_ARCH_GOLDENS_H_
