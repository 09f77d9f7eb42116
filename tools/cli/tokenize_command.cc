#include "tools/cli/tokenize_command.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/bpe_tokenizer.h"
#include "common/file_contents.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace baq::cli {
namespace {

constexpr char kUsagePrefix[] = "usage: ";

absl::Status Usage(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(
      kUsagePrefix, what,
      " (baq tokenize (--model DIR | --tokenizer FILE) --text FILE)"));
}

}  // namespace

bool IsTokenizeUsageError(const absl::Status& status) {
  return status.code() == absl::StatusCode::kInvalidArgument &&
         absl::StartsWith(status.message(), kUsagePrefix);
}

absl::StatusOr<std::string> TokenizeToJson(const TokenizeOptions& options) {
  if (options.model_dir.empty() == options.tokenizer_file.empty()) {
    return Usage("give exactly one of --model and --tokenizer");
  }
  if (options.text_file.empty()) return Usage("--text is required");
  const std::string path =
      options.tokenizer_file.empty()
          ? absl::StrCat(options.model_dir, "/tokenizer.json")
          : options.tokenizer_file;
  BAQ_ASSIGN_OR_RETURN(BpeTokenizer tokenizer, BpeTokenizer::Load(path));
  BAQ_ASSIGN_OR_RETURN(const std::string text,
                       ReadFileContents(options.text_file));
  BAQ_ASSIGN_OR_RETURN(const std::vector<int32_t> ids,
                       Annotate(tokenizer.Encode(text), options.text_file));
  std::string out = absl::StrCat("{\"count\": ", ids.size(), ", \"ids\": [");
  out.reserve(out.size() + ids.size() * 7 + 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out += ", ";
    absl::StrAppend(&out, ids[i]);
  }
  out += "]}\n";
  return out;
}

}  // namespace baq::cli
