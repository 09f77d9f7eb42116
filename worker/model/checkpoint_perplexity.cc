#include "worker/model/checkpoint_perplexity.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/bpe_tokenizer.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/text_dataset.h"

namespace baq::worker {

absl::StatusOr<PerplexityResult> EvaluateCheckpointPerplexity(
    const std::string& model_dir, const std::string& text_file, int64_t seqlen,
    const CheckpointPerplexityOptions& options) {
  if (model_dir.empty() || text_file.empty()) {
    return absl::InvalidArgumentError("perplexity: needs a model directory and a text file");
  }
  BAQ_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsCheckpoint> ckpt,
                       SafetensorsCheckpoint::Open(model_dir));
  BAQ_ASSIGN_OR_RETURN(BpeTokenizer tokenizer, BpeTokenizer::Load(model_dir + "/tokenizer.json"));
  BAQ_ASSIGN_OR_RETURN(TokenWindows windows, LoadEvaluationSet(tokenizer, text_file, seqlen));
  if (options.max_windows > 0 && windows.num_windows() > options.max_windows) {
    windows.starts.resize(static_cast<size_t>(options.max_windows));
    windows.ids.resize(static_cast<size_t>(options.max_windows * seqlen));
  }
  PerplexityOptions p = options.perplexity;
  if (options.configure) options.configure(config, *ckpt, p);
  return Annotate(EvaluatePerplexity(config, *ckpt, windows, p),
                  absl::StrCat("perplexity of ", model_dir, " on ", text_file));
}

}  // namespace baq::worker
