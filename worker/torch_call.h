// worker/torch_call.h
//
// Forwarding header: CallTorch moved to worker/torch/torch_call.h, below the
// quant/ and model/ code that includes it (issue 15). Kept only for
// worker/activation_codec.cc and worker/quant/hessian_accumulator.cc, which
// the wire-codec change (branch `codec`) rewrites; delete this file once
// they include worker/torch/torch_call.h.
#ifndef BAQ_WORKER_TORCH_CALL_H_
#define BAQ_WORKER_TORCH_CALL_H_

#include "worker/torch/torch_call.h"  // IWYU pragma: export

#endif  // BAQ_WORKER_TORCH_CALL_H_
