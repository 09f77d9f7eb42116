// `baq eval`: perplexity of a checkpoint (original or fake-quant output)
// over non-overlapping windows of a text file, the GPTQ/BAQ protocol.
#include <cstdio>

#include "common/bpe_tokenizer.h"
#include "common/status_macros.h"
#include "common/text_dataset.h"
#include "tools/cli/local_commands.h"

namespace baq::cli {

absl::Status RunEval(const EvalOptions& options) {
  return absl::UnimplementedError("baq eval: waiting for worker/model/perplexity.h");
}

}  // namespace baq::cli
