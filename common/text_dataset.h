// common/text_dataset.h
//
// Text datasets for calibration and evaluation, in token ids:
//  - TokenizeFiles(): each file read (strict UTF-8) and encoded on its own,
//    without special tokens, the id lists concatenated in order.
//  - Calibration: `num_windows` windows of `window_tokens` ids drawn from the
//    concatenation with a fixed seed. The default sampler reproduces the
//    GPTQ reference code exactly: Python `random.seed(seed)`, then per window
//    `i = random.randint(0, total - window_tokens - 1)`, window ids[i, i+L).
//  - Evaluation: the GPTQ/BAQ perplexity protocol, non-overlapping windows
//    ids[k*L, (k+1)*L) for k < total / L; the tail is dropped.
// GoldenCalibrationFiles()/LoadGoldenCalibrationSet() give the composition
// the shared golden results were computed on (shared/data/README.md).
//
// Errors: NotFound for a file that cannot be opened; InvalidArgument naming
// the file for an empty file or invalid UTF-8, and naming the files and
// their token counts when there is too little data.
//
// Value types and free functions; thread-compatible.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(BpeTokenizer tok, BpeTokenizer::Load(model +
//   "/tokenizer.json")); BAQ_ASSIGN_OR_RETURN(TokenWindows calib,
//   LoadCalibrationSet(tok, files, {})); for (int64_t w = 0; w <
//   calib.num_windows(); ++w) Feed(calib.window(w));
#ifndef BAQ_COMMON_TEXT_DATASET_H_
#define BAQ_COMMON_TEXT_DATASET_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/bpe_tokenizer.h"

namespace baq {

// The bytes of a UTF-8 text file. NotFound if it cannot be opened;
// InvalidArgument naming the file if it is empty or not valid UTF-8 (with the
// byte offset).
absl::StatusOr<std::string> ReadTextFile(const std::string& path);

// Ids of several files, each encoded on its own, concatenated in order.
struct TokenizedCorpus {
  std::vector<int32_t> ids;
  std::vector<std::pair<std::string, int64_t>> files;  // (path, token count).
  // "a.txt (123 tokens), b.txt (45 tokens)", for error messages.
  std::string Describe() const;
};

// REQUIRES: `paths` not empty (InvalidArgument otherwise).
absl::StatusOr<TokenizedCorpus> TokenizeFiles(const BpeTokenizer& tokenizer,
                                              absl::Span<const std::string> paths);

enum class WindowSampler {
  // CPython random.seed(seed) + random.randint(0, total - L - 1) per window,
  // as IST-DASLab/gptq datautils.py. Windows may overlap.
  kPython,
  // std::mt19937_64(seed) with unbiased rejection; same range. Portable and
  // deterministic, but a different stream from kPython.
  kMt19937_64,
};

struct CalibrationOptions {
  int64_t num_windows = 128;
  int64_t window_tokens = 2048;
  uint64_t seed = 0;
  WindowSampler sampler = WindowSampler::kPython;
};

// Equal-length windows of token ids, stored row-major [num_windows,
// window_tokens].
struct TokenWindows {
  int64_t window_tokens = 0;
  std::vector<int64_t> starts;  // Offset of each window in the source ids.
  std::vector<int32_t> ids;

  int64_t num_windows() const { return static_cast<int64_t>(starts.size()); }
  absl::Span<const int32_t> window(int64_t i) const {
    return absl::MakeConstSpan(ids).subspan(i * window_tokens, window_tokens);
  }
};

// The window starts `options` draws from `total_tokens` ids. InvalidArgument
// if num_windows or window_tokens < 1, or total_tokens <= window_tokens.
absl::StatusOr<std::vector<int64_t>> SampleWindowStarts(int64_t total_tokens,
                                                        const CalibrationOptions& options);

// Calibration windows from a tokenized corpus (errors name its files).
absl::StatusOr<TokenWindows> SampleCalibrationWindows(const TokenizedCorpus& corpus,
                                                      const CalibrationOptions& options);

// TokenizeFiles() + SampleCalibrationWindows().
absl::StatusOr<TokenWindows> LoadCalibrationSet(const BpeTokenizer& tokenizer,
                                                absl::Span<const std::string> paths,
                                                const CalibrationOptions& options);

// corpus/war_and_peace.txt, corpus/tiny_shakespeare.txt, wikitext-2/valid.txt
// under `data_dir`, in that order.
std::vector<std::string> GoldenCalibrationFiles(absl::string_view data_dir);

// The golden calibration set: GoldenCalibrationFiles(), 128 windows of 2048
// tokens, Python sampler, seed 0.
absl::StatusOr<TokenWindows> LoadGoldenCalibrationSet(const BpeTokenizer& tokenizer,
                                                      absl::string_view data_dir);

// Non-overlapping windows ids[k*L, (k+1)*L), k < ids.size() / L.
// InvalidArgument if window_tokens < 1 or there is not one full window.
absl::StatusOr<TokenWindows> EvaluationWindows(absl::Span<const int32_t> ids,
                                               int64_t window_tokens);

// The whole file encoded as one string, then EvaluationWindows().
absl::StatusOr<TokenWindows> LoadEvaluationSet(const BpeTokenizer& tokenizer,
                                               const std::string& path, int64_t window_tokens);

}  // namespace baq

#endif  // BAQ_COMMON_TEXT_DATASET_H_
