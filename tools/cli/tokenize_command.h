// tools/cli/tokenize_command.h
//
// `baq tokenize`: the token ids baq uses for calibration and evaluation of a
// text file (the whole file encoded as one string, no special tokens added),
// printed as one JSON object {"count": N, "ids": [...]}. Users check that a
// tokenizer loads and matches their reference before a long job, and count
// their calibration tokens. Torch-free.
//
// Example:
//   TokenizeOptions o;
//   o.tokenizer_file = "llama/tokenizer.json";
//   o.text_file = "calib.txt";
//   BAQ_ASSIGN_OR_RETURN(std::string json, TokenizeToJson(o));
#ifndef BAQ_TOOLS_CLI_TOKENIZE_COMMAND_H_
#define BAQ_TOOLS_CLI_TOKENIZE_COMMAND_H_

#include <string>

#include "absl/status/statusor.h"

namespace baq::cli {

struct TokenizeOptions {
  // Exactly one of the two: a model directory (its tokenizer.json and
  // tokenizer_config.json) or a tokenizer.json file.
  std::string model_dir;
  std::string tokenizer_file;
  std::string text_file;
};

// The JSON line (with a trailing newline). InvalidArgument for bad options
// (a usage error) is returned before anything is read; otherwise the
// tokenizer's or the file's error (NotFound, InvalidArgument, Unimplemented).
absl::StatusOr<std::string> TokenizeToJson(const TokenizeOptions& options);

// True if `status` came from TokenizeOptions that are wrong as given (usage),
// as opposed to an input that was read and refused.
bool IsTokenizeUsageError(const absl::Status& status);

}  // namespace baq::cli

#endif  // BAQ_TOOLS_CLI_TOKENIZE_COMMAND_H_
