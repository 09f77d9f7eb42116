#include "worker/model/block_factory.h"

#include "absl/strings/str_cat.h"
#include "common/trace_recorder.h"
#include "worker/model/gemma_block.h"
#include "worker/model/llama_block.h"
#include "worker/model/opt_block.h"

namespace baq::worker {

absl::StatusOr<std::unique_ptr<DecoderBlock>> LoadDecoderBlock(const ModelConfig& config,
                                                               const SafetensorsCheckpoint& ckpt,
                                                               int64_t block,
                                                               const BlockOptions& options) {
  BAQ_TRACE_SCOPE("engine", "load_block", {{"block", block}});
  if (block < 0 || block >= config.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("block ", block, " is out of range: ",
                                                   config.model_type, " model has ",
                                                   config.num_layers, " blocks"));
  }
  switch (config.family) {
    case ModelFamily::kOpt:
      return LoadOptBlock(config, ckpt, block, options);
    case ModelFamily::kLlama:
      return LoadLlamaBlock(config, ckpt, block, options);
    case ModelFamily::kGemma:
      return LoadGemmaBlock(config, ckpt, block, options);
  }
  return absl::UnimplementedError(absl::StrCat("no block implementation for model_type \"",
                                               config.model_type, "\""));
}

}  // namespace baq::worker
