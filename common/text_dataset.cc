#include "common/text_dataset.h"

#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/python_random.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/unicode.h"

namespace baq {
namespace {

absl::Status CheckPositive(absl::string_view name, int64_t value) {
  if (value >= 1) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, " must be >= 1, got ", value));
}

// Uniform in [0, n) from a 64-bit engine, by rejection (unbiased; unlike
// std::uniform_int_distribution, the same on every standard library).
uint64_t Below(std::mt19937_64& engine, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // Multiple of n.
  uint64_t r;
  do {
    r = engine();
  } while (r >= limit);
  return r % n;
}

TokenWindows Gather(absl::Span<const int32_t> ids, std::vector<int64_t> starts,
                    int64_t window_tokens) {
  TokenWindows windows;
  windows.window_tokens = window_tokens;
  windows.ids.reserve(starts.size() * window_tokens);
  for (int64_t start : starts) {
    windows.ids.insert(windows.ids.end(), ids.begin() + start, ids.begin() + start + window_tokens);
  }
  windows.starts = std::move(starts);
  return windows;
}

}  // namespace

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open text file ", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  std::string text = std::move(buffer).str();
  if (text.empty())
    return absl::InvalidArgumentError(absl::StrCat("text file ", path, " is empty"));
  if (const size_t bad = FindInvalidUtf8(text); bad != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("text file ", path, " is not valid UTF-8 at byte ", bad));
  }
  return text;
}

std::string TokenizedCorpus::Describe() const {
  return absl::StrJoin(files, ", ", [](std::string* out, const auto& file) {
    absl::StrAppend(out, file.first, " (", file.second, " tokens)");
  });
}

absl::StatusOr<TokenizedCorpus> TokenizeFiles(const BpeTokenizer& tokenizer,
                                              absl::Span<const std::string> paths) {
  if (paths.empty()) return absl::InvalidArgumentError("no text files given");
  TokenizedCorpus corpus;
  for (const std::string& path : paths) {
    BAQ_ASSIGN_OR_RETURN(const std::string text, ReadTextFile(path));
    BAQ_ASSIGN_OR_RETURN(const std::vector<int32_t> ids,
                         Annotate(tokenizer.Encode(text), absl::StrCat("encoding ", path)));
    corpus.ids.insert(corpus.ids.end(), ids.begin(), ids.end());
    corpus.files.emplace_back(path, static_cast<int64_t>(ids.size()));
  }
  return corpus;
}

absl::StatusOr<std::vector<int64_t>> SampleWindowStarts(int64_t total_tokens,
                                                        const CalibrationOptions& options) {
  BAQ_RETURN_IF_ERROR(CheckPositive("num_windows", options.num_windows));
  BAQ_RETURN_IF_ERROR(CheckPositive("window_tokens", options.window_tokens));
  if (total_tokens <= options.window_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration needs more than window_tokens = ", options.window_tokens,
                     " tokens, got ", total_tokens));
  }
  // randint(0, total - L - 1): starts in [0, total - L).
  const uint64_t range = static_cast<uint64_t>(total_tokens - options.window_tokens);
  std::vector<int64_t> starts;
  starts.reserve(options.num_windows);
  if (options.sampler == WindowSampler::kPython) {
    PythonRandom rng(options.seed);
    for (int64_t i = 0; i < options.num_windows; ++i) {
      starts.push_back(static_cast<int64_t>(rng.RandBelow(range)));
    }
  } else {
    std::mt19937_64 engine(options.seed);
    for (int64_t i = 0; i < options.num_windows; ++i) {
      starts.push_back(static_cast<int64_t>(Below(engine, range)));
    }
  }
  return starts;
}

absl::StatusOr<TokenWindows> SampleCalibrationWindows(const TokenizedCorpus& corpus,
                                                      const CalibrationOptions& options) {
  BAQ_ASSIGN_OR_RETURN(
      std::vector<int64_t> starts,
      Annotate(SampleWindowStarts(static_cast<int64_t>(corpus.ids.size()), options),
               absl::StrCat("calibration data ", corpus.Describe())));
  return Gather(corpus.ids, std::move(starts), options.window_tokens);
}

absl::StatusOr<TokenWindows> LoadCalibrationSet(const BpeTokenizer& tokenizer,
                                                absl::Span<const std::string> paths,
                                                const CalibrationOptions& options) {
  // Validate the options before the (slow) tokenization.
  BAQ_RETURN_IF_ERROR(CheckPositive("num_windows", options.num_windows));
  BAQ_RETURN_IF_ERROR(CheckPositive("window_tokens", options.window_tokens));
  BAQ_ASSIGN_OR_RETURN(const TokenizedCorpus corpus, TokenizeFiles(tokenizer, paths));
  return SampleCalibrationWindows(corpus, options);
}

std::vector<std::string> GoldenCalibrationFiles(absl::string_view data_dir) {
  return {absl::StrCat(data_dir, "/corpus/war_and_peace.txt"),
          absl::StrCat(data_dir, "/corpus/tiny_shakespeare.txt"),
          absl::StrCat(data_dir, "/wikitext-2/valid.txt")};
}

absl::StatusOr<TokenWindows> LoadGoldenCalibrationSet(const BpeTokenizer& tokenizer,
                                                      absl::string_view data_dir) {
  CalibrationOptions options;
  options.num_windows = 128;
  options.window_tokens = 2048;
  options.seed = 0;
  options.sampler = WindowSampler::kPython;
  return LoadCalibrationSet(tokenizer, GoldenCalibrationFiles(data_dir), options);
}

absl::StatusOr<TokenWindows> EvaluationWindows(absl::Span<const int32_t> ids,
                                               int64_t window_tokens) {
  BAQ_RETURN_IF_ERROR(CheckPositive("window_tokens", window_tokens));
  const int64_t count = static_cast<int64_t>(ids.size()) / window_tokens;
  if (count == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "evaluation needs at least window_tokens = ", window_tokens, " tokens, got ", ids.size()));
  }
  std::vector<int64_t> starts;
  for (int64_t k = 0; k < count; ++k) starts.push_back(k * window_tokens);
  return Gather(ids, std::move(starts), window_tokens);
}

absl::StatusOr<TokenWindows> LoadEvaluationSet(const BpeTokenizer& tokenizer,
                                               const std::string& path, int64_t window_tokens) {
  BAQ_RETURN_IF_ERROR(CheckPositive("window_tokens", window_tokens));
  BAQ_ASSIGN_OR_RETURN(const TokenizedCorpus corpus, TokenizeFiles(tokenizer, {path}));
  return Annotate(EvaluationWindows(corpus.ids, window_tokens),
                  absl::StrCat("evaluation data ", corpus.Describe()));
}

}  // namespace baq
