#include "worker/model/perplexity.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/model/block_factory.h"
#include "worker/model/model_head.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

// Runs `fn(begin, count)` over [0, total) in batches of `batch`. With
// `parallel`, batches run concurrently on LibTorch's intra-op threads
// (at::parallel_for), and the LibTorch ops inside each run single-threaded:
// one window per core, no fine-grained synchronization, which keeps scaling
// when the cores are shared (many small multi-threaded GEMMs do not: measured
// 40x slower than single-threaded on a loaded 2-core machine).
template <typename Fn>
absl::Status ForEachBatch(int64_t total, int64_t batch, bool parallel, Fn&& fn) {
  batch = std::max<int64_t>(1, batch);
  const int64_t batches = (total + batch - 1) / batch;
  std::vector<absl::Status> status(static_cast<size_t>(batches));
  const auto run = [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t begin = i * batch;
      status[static_cast<size_t>(i)] = fn(begin, std::min(batch, total - begin));
    }
  };
  if (parallel && batches > 1) {
    BAQ_RETURN_IF_ERROR(CallTorch("parallel windows", [&] {
      at::parallel_for(0, batches, /*grain_size=*/1, run);
    }));
  } else {
    run(0, batches);
  }
  for (absl::Status& s : status) BAQ_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

// [windows, L] int64 ids on the CPU.
absl::StatusOr<at::Tensor> IdTensor(const TokenWindows& windows) {
  return CallTorch("window ids", [&] {
    return at::from_blob(const_cast<int32_t*>(windows.ids.data()),
                         {windows.num_windows(), windows.window_tokens},
                         at::TensorOptions().dtype(at::kInt))
        .to(at::kLong);
  });
}

}  // namespace

absl::StatusOr<PerplexityResult> EvaluatePerplexity(const ModelConfig& config,
                                                    const SafetensorsCheckpoint& ckpt,
                                                    const TokenWindows& windows,
                                                    const PerplexityOptions& options) {
  const int64_t n = windows.num_windows();
  const int64_t seq = windows.window_tokens;
  if (n < 1 || seq < 2 || static_cast<int64_t>(windows.ids.size()) != n * seq) {
    return absl::InvalidArgumentError(absl::StrCat(
        "perplexity needs at least one window of >= 2 tokens, got ", n, " windows of ", seq,
        " tokens and ", windows.ids.size(), " ids"));
  }
  if (options.num_threads > 0) at::set_num_threads(options.num_threads);
  const BlockOptions& bo = options.block;
  const bool cpu_parallel = bo.device.is_cpu() && at::get_num_threads() > 1;
  BAQ_ASSIGN_OR_RETURN(const at::Tensor ids, IdTensor(windows));

  // 1. Embeddings of every window: the inputs of block 0.
  at::Tensor hidden;
  {
    BAQ_ASSIGN_OR_RETURN(std::unique_ptr<TokenEmbedding> embed,
                         TokenEmbedding::Load(config, ckpt, bo));
    BAQ_ASSIGN_OR_RETURN(hidden, CallTorch("allocate activations", [&] {
                           return at::empty({n, seq, config.hidden_size},
                                            at::TensorOptions()
                                                .dtype(bo.compute_dtype)
                                                .device(bo.device));
                         }));
    BAQ_RETURN_IF_ERROR(ForEachBatch(n, options.batch_windows, false, [&](int64_t b, int64_t c) {
      BAQ_ASSIGN_OR_RETURN(at::Tensor e, embed->Embed(ids.narrow(0, b, c)));
      return CallTorch("store embeddings", [&] { hidden.narrow(0, b, c).copy_(e); });
    }));
  }

  // 2. Block by block; only one block's parameters are alive at a time.
  for (int64_t i = 0; i < config.num_layers; ++i) {
    BAQ_ASSIGN_OR_RETURN(std::unique_ptr<DecoderBlock> block,
                         LoadDecoderBlock(config, ckpt, i, bo));
    if (options.on_block_loaded) BAQ_RETURN_IF_ERROR(options.on_block_loaded(*block));
    const bool parallel = cpu_parallel && !block->has_input_observer();
    BAQ_RETURN_IF_ERROR(ForEachBatch(n, options.batch_windows, parallel, [&](int64_t b, int64_t c) {
      BAQ_ASSIGN_OR_RETURN(at::Tensor out, block->Forward(hidden.narrow(0, b, c)));
      return CallTorch("store activations", [&] { hidden.narrow(0, b, c).copy_(out); });
    }));
    block.reset();
    if (options.progress) options.progress(i, config.num_layers);
  }

  // 3. Final norm, LM head, cross entropy of token t+1 given tokens <= t.
  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<OutputHead> head, OutputHead::Load(config, ckpt, bo));
  std::vector<double> window_nll(static_cast<size_t>(n));  // Mean NLL of each window.
  BAQ_RETURN_IF_ERROR(ForEachBatch(n, 1, cpu_parallel, [&](int64_t w, int64_t) -> absl::Status {
    BAQ_ASSIGN_OR_RETURN(at::Tensor normalized,
                         head->Normalize(hidden[w].narrow(0, 0, seq - 1)));
    BAQ_ASSIGN_OR_RETURN(at::Tensor nll, head->TokenNll(normalized, ids[w].narrow(0, 1, seq - 1),
                                                        options.head_chunk_rows));
    BAQ_ASSIGN_OR_RETURN(window_nll[static_cast<size_t>(w)], CallTorch("window nll", [&] {
                           return nll.to(at::kDouble).mean().item<double>();
                         }));
    return absl::OkStatus();
  }));
  // The reference's nlls: mean NLL of each window * L, summed in window order.
  double nll_sum = 0;
  for (double mean : window_nll) nll_sum += mean * static_cast<double>(seq);
  PerplexityResult result;
  result.num_windows = n;
  result.window_tokens = seq;
  result.mean_nll = nll_sum / (static_cast<double>(n) * static_cast<double>(seq));
  result.perplexity = std::exp(result.mean_nll);
  if (!std::isfinite(result.perplexity)) {
    return absl::InternalError(absl::StrCat("perplexity is not finite (mean nll ",
                                            result.mean_nll, ")"));
  }
  return result;
}

}  // namespace baq::worker
