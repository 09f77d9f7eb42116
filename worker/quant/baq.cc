#include "worker/quant/baq.h"

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/quant/gptq_engine.h"
#include "worker/quant/quant_grid.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

using quant_internal::ColumnGrid;

absl::StatusOr<BaqResult> BaqImpl(const at::Tensor& weight, const at::Tensor& hessian,
                                  std::vector<int32_t> levels, const BaqOptions& o) {
  const int64_t cols = weight.size(1);
  BaqResult r;
  at::Tensor w, h, inv_perm;
  RowRange range;
  std::vector<int32_t> levels_in_order;  // levels of the k-th quantized column
  BAQ_RETURN_IF_ERROR(CallTorch("BAQ prepare", [&] {
    w = weight.to(o.compute_dtype, /*non_blocking=*/false, /*copy=*/true);
    quant_internal::PreparedHessian p = quant_internal::PrepareHessian(hessian, o.compute_dtype);
    h = std::move(p.h);
    // gptq_baq.py zeroes dead columns before taking the row range.
    w.index_fill_(1, p.dead.nonzero().view(-1), 0);
    range = FindRowRangeUnchecked(w, /*symmetric=*/false);
    r.perm = at::arange(cols, w.options().dtype(at::kLong));
    levels_in_order = levels;
    if (o.act_order) {
      r.perm = quant_internal::ActOrderPermutation(h);
      inv_perm = at::argsort(r.perm);
      h = h.index_select(0, r.perm).index_select(1, r.perm);
      const at::Tensor p_cpu = r.perm.cpu();
      const int64_t* perm = p_cpu.data_ptr<int64_t>();
      for (int64_t k = 0; k < cols; ++k) levels_in_order[k] = levels[perm[k]];
    }
  }));
  BAQ_ASSIGN_OR_RETURN(quant_internal::InverseFactor f,
                       quant_internal::InverseHessianFactor(h, o.percdamp, o.damp_auto_increment));
  r.percdamp = f.percdamp;
  r.damp = f.damp;
  BAQ_RETURN_IF_ERROR(CallTorch("BAQ loop", [&] {
    // Per row chunk: one grid per distinct level count, built on first use.
    auto make_grid_fn = [&](int64_t r0, int64_t r1) -> quant_internal::GridFn {
      const RowRange rows{range.xmin.narrow(0, r0, r1 - r0), range.xmax.narrow(0, r0, r1 - r0)};
      auto grids = std::make_shared<std::map<int32_t, ColumnGrid>>();
      auto current = std::make_shared<int32_t>(-1);
      return [&levels_in_order, rows, grids, current](int64_t k, const at::Tensor&,
                                                      ColumnGrid* grid) {
        const int32_t l = levels_in_order[k];
        if (l == *current) return;
        *current = l;
        auto it = grids->find(l);
        if (it == grids->end()) {
          QuantGrid g = GridFromRangeUnchecked(rows, GridOptions{l, /*symmetric=*/false});
          it = grids->emplace(l, ColumnGrid{std::move(g.scale), std::move(g.zero), g.maxq}).first;
        }
        *grid = it->second;
      };
    };
    at::Tensor wt = (o.act_order ? w.index_select(1, r.perm) : w).t().contiguous();
    quant_internal::LoopResult loop =
        quant_internal::RunGptqLoop(wt, f.hinv, o.block_size, make_grid_fn);
    r.weight = quant_internal::UnpermuteTransposed(loop.qt, inv_perm).to(at::kFloat);
    r.codes = quant_internal::UnpermuteTransposed(loop.codes_t, inv_perm);
    r.column_loss = inv_perm.defined() ? loop.loss.index_select(0, inv_perm) : loop.loss;
    r.levels = at::tensor(at::ArrayRef<int32_t>(levels)).to(w.device());
    r.row_min = range.xmin.to(at::kFloat);
    r.row_max = range.xmax.to(at::kFloat);
  }));
  BAQ_RETURN_IF_ERROR(quant_internal::CheckFiniteResult(r.weight, "BAQ result"));
  if (o.compute_proxy_loss) {
    BAQ_ASSIGN_OR_RETURN(r.proxy_loss, CallTorch("BAQ proxy loss", [&] {
                           return quant_internal::ProxyLossUnchecked(weight, r.weight, hessian);
                         }));
  }
  return r;
}

absl::Status CheckOptions(const BaqOptions& o) {
  return quant_internal::CheckEngineOptions(
      {o.percdamp, o.damp_auto_increment, o.block_size, o.compute_dtype});
}

}  // namespace

absl::StatusOr<BaqResult> BaqMeasure(const at::Tensor& weight, const at::Tensor& hessian,
                                     int reference_levels, const BaqOptions& options) {
  if (reference_levels < 2 || reference_levels > kMaxLevels) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference_levels must be in [2, ", kMaxLevels, "], got ", reference_levels));
  }
  BAQ_RETURN_IF_ERROR(CheckOptions(options));
  BAQ_RETURN_IF_ERROR(quant_internal::CheckLayer(weight, hessian));
  return BaqImpl(weight, hessian, std::vector<int32_t>(weight.size(1), reference_levels), options);
}

absl::StatusOr<BaqResult> BaqQuantize(const at::Tensor& weight, const at::Tensor& hessian,
                                      absl::Span<const int32_t> levels, const BaqOptions& options) {
  BAQ_RETURN_IF_ERROR(CheckOptions(options));
  BAQ_RETURN_IF_ERROR(quant_internal::CheckLayer(weight, hessian));
  if (static_cast<int64_t>(levels.size()) != weight.size(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "levels has ", levels.size(), " entries, weight has ", weight.size(1), " input columns"));
  }
  for (size_t j = 0; j < levels.size(); ++j) {
    if (levels[j] < 1 || levels[j] > kMaxLevels) {
      return absl::InvalidArgumentError(
          absl::StrCat("levels[", j, "] = ", levels[j], " is outside [1, ", kMaxLevels, "]"));
    }
  }
  return BaqImpl(weight, hessian, std::vector<int32_t>(levels.begin(), levels.end()), options);
}

}  // namespace baq::worker
