// coordinator/layer_owners.h
//
// Places the linear layers of one block on the engines of a resident
// data-parallel job (common/engine_capabilities.h, LayerOwnership): each
// layer is quantized by exactly one owner, the owners balanced by the work
// the layer's quantization costs, as llm-compressor's distributed GPTQ
// balances modules by Hessian size. A layer with C input columns and R rows
// costs about C^3 (the Cholesky of its C x C Hessian) + R * C^2 (the error
// propagation); layers are taken in decreasing cost (ties: block order) and
// each goes to the least loaded engine (ties: the lower engine index) — the
// LPT rule, within 4/3 of the optimal makespan. Deterministic, and the bits
// never depend on it: every owner quantizes from the same merged Hessians.
//
// Stateless functions; thread-safe.
#ifndef BAQ_COORDINATOR_LAYER_OWNERS_H_
#define BAQ_COORDINATOR_LAYER_OWNERS_H_

#include <cstdint>
#include <vector>

#include "common/block_protocol.h"

namespace baq::coordinator {

// The relative cost of quantizing `layer` (C^3 + R * C^2, as a double).
double QuantizeCost(const LayerShape& layer);

// owner[i] in [0, engines) for layers[i]. REQUIRES: engines >= 1.
std::vector<int> AssignLayerOwners(const std::vector<LayerShape>& layers, int engines);

// The layer indices owner `engine` got, increasing.
std::vector<int32_t> LayersOf(const std::vector<int>& owners, int engine);

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_LAYER_OWNERS_H_
