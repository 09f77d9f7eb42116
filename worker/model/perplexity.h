// worker/model/perplexity.h
//
// EvaluatePerplexity: WikiText-style perplexity of a decoder-only LM, by the
// GPTQ paper's protocol (IST-DASLab/gptq opt_eval / llama_eval), executed
// block by block so memory holds one block's parameters plus the activations:
//   1. token ids -> non-overlapping windows of L tokens, tail dropped
//      (common/text_dataset.h EvaluationWindows / LoadEvaluationSet);
//   2. embed all windows, then run all windows through block 0, free it,
//      load block 1, ... (activations stay in the compute dtype on the
//      device, [windows, L, hidden], updated in place);
//   3. final norm, LM head, shift-by-one cross entropy per window:
//      nll_w = mean over the L-1 predicted tokens * L, and
//      ppl = exp(sum_w nll_w / (windows * L)), exactly as the reference.
//
// Thread-compatible; runs on the calling thread (on GPU, call it from the
// device's executor). LibTorch exceptions never escape.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(TokenWindows windows, LoadEvaluationSet(tok, path, 2048));
//   PerplexityOptions options;
//   options.num_threads = 2;
//   options.progress = [&](int64_t block, int64_t blocks) { bar.Update(block + 1, blocks); };
//   BAQ_ASSIGN_OR_RETURN(PerplexityResult r,
//                        EvaluatePerplexity(config, *ckpt, windows, options));
#ifndef BAQ_WORKER_MODEL_PERPLEXITY_H_
#define BAQ_WORKER_MODEL_PERPLEXITY_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "common/text_dataset.h"
#include "worker/model/decoder_block.h"

namespace baq::worker {

struct PerplexityOptions {
  // Device, compute dtype and attention chunking of every block and head.
  BlockOptions block;
  // > 0: at::set_num_threads(num_threads) first. LibTorch's intra-op pool is
  // process-wide, so this affects every LibTorch caller in the process.
  int num_threads = 0;
  // Windows per block Forward(): larger batches use bigger matmuls but need
  // [batch, heads, attention_query_chunk, L] scores.
  int64_t batch_windows = 1;
  // Tokens per LM head + log-softmax step: bounds logits to
  // [head_chunk_rows, vocab] float32.
  int64_t head_chunk_rows = 512;
  // Called after block `block` (0-based) has processed every window.
  std::function<void(int64_t block, int64_t num_blocks)> progress;
  // Called after each block is loaded and before it runs, e.g. to replace
  // its weights by quantized ones; a non-OK status stops the evaluation.
  std::function<absl::Status(DecoderBlock& block)> on_block_loaded;
};

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;  // log(perplexity), nats per token.
  int64_t num_windows = 0;
  int64_t window_tokens = 0;
};

// InvalidArgument if `windows` is empty or its ids are outside the
// vocabulary, or if the checkpoint does not match the config (naming the
// tensor); errors of the callbacks are returned as they are.
absl::StatusOr<PerplexityResult> EvaluatePerplexity(const ModelConfig& config,
                                                    const SafetensorsCheckpoint& ckpt,
                                                    const TokenWindows& windows,
                                                    const PerplexityOptions& options);

}  // namespace baq::worker

#endif  // BAQ_WORKER_MODEL_PERPLEXITY_H_
