// common/file_contents.h
//
// ReadFileContents: a whole (small) file as bytes, with the file's path in
// every error, for the readers of JSON side files (config.json,
// tokenizer.json, tokenizer_config.json). Large tensors are mmapped by
// SafetensorsCheckpoint instead; text datasets are read (and validated) by
// ReadTextFile (common/text_dataset.h).
//
// Thread-safe free function.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(const std::string text, ReadFileContents(dir + "/config.json"));
#ifndef BAQ_COMMON_FILE_CONTENTS_H_
#define BAQ_COMMON_FILE_CONTENTS_H_

#include <string>

#include "absl/status/statusor.h"

namespace baq {

// The bytes of the file at `path`. NotFound ("cannot open PATH") when it
// cannot be opened; DataLoss ("error reading PATH") when reading fails.
absl::StatusOr<std::string> ReadFileContents(const std::string& path);

}  // namespace baq

#endif  // BAQ_COMMON_FILE_CONTENTS_H_
