#include "worker/quant/gptq.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/quant/gptq_engine.h"
#include "worker/quant/tensor_checks.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

using quant_internal::ColumnGrid;

absl::Status CheckOptions(const GptqOptions& o) {
  BAQ_RETURN_IF_ERROR(ValidateGridOptions(o.grid));
  BAQ_RETURN_IF_ERROR(quant_internal::CheckEngineOptions(
      {o.percdamp, o.damp_auto_increment, o.block_size, o.compute_dtype}));
  if (o.group_size != -1 && o.group_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("group_size must be -1 or >= 1, got ", o.group_size));
  }
  if (o.static_groups && o.group_size == -1) {
    return absl::InvalidArgumentError("static_groups requires group_size >= 1");
  }
  return absl::OkStatus();
}

// Chooses each column's grid as gptq.py does and records the group grids.
class GroupGrids {
 public:
  GroupGrids(const GptqOptions& o, int64_t rows, int64_t cols, const at::TensorOptions& t)
      : o_(o), cols_(cols), group_(o.group_size == -1 ? cols : o.group_size) {
    num_groups_ = (cols + group_ - 1) / group_;
    scales_ = at::empty({rows, num_groups_}, t);
    zeros_ = at::empty({rows, num_groups_}, t);
  }

  // One grid for all columns, from the weight before dead columns are zeroed
  // (gptq.py calls find_params(W) before W[:, dead] = 0).
  void SetWholeRow(const at::Tensor& w) { Record(0, 0, FindGridUnchecked(w, o_.grid)); }

  // gptq.py static_groups: grids of the dead-zeroed weight, original order.
  void SetStatic(const at::Tensor& w, std::vector<int64_t> perm) {
    perm_ = std::move(perm);
    for (int64_t g = 0; g < num_groups_; ++g) {
      const int64_t width = std::min(group_, cols_ - g * group_);
      Record(0, g, FindGridUnchecked(w.narrow(1, g * group_, width), o_.grid));
    }
  }

  // The grid chooser of rows [r0, r1); dynamic groups are found on the chunk's
  // working weight and recorded into its rows of scales/zeros.
  quant_internal::GridFn ForRows(int64_t r0, int64_t r1) {
    auto current = std::make_shared<int64_t>(-1);
    return [this, r0, r1, current](int64_t k, const at::Tensor& wt, ColumnGrid* grid) {
      int64_t g = 0;
      if (o_.group_size != -1 && o_.static_groups) {
        g = (perm_.empty() ? k : perm_[k]) / group_;
      } else if (o_.group_size != -1) {
        g = k / group_;
        if (k % group_ == 0) {
          // gptq.py: find_params(W[:, k:k + groupsize]) on its outer W.
          const at::Tensor x = wt.narrow(0, k, std::min(group_, cols_ - k)).t();
          Record(r0, g, FindGridUnchecked(x, o_.grid));
          *current = -1;
        }
      }
      if (g != *current) {
        *current = g;
        grid->scale = scales_.narrow(0, r0, r1 - r0).select(1, g).contiguous();
        grid->zero = zeros_.narrow(0, r0, r1 - r0).select(1, g).contiguous();
        grid->maxq = o_.grid.levels - 1;
      }
    };
  }

  at::Tensor GroupIndex(const at::Tensor& perm, const at::TensorOptions& t) const {
    const at::Tensor position = at::arange(cols_, t.dtype(at::kLong));
    if (o_.group_size == -1) return at::zeros({cols_}, t.dtype(at::kInt));
    if (o_.static_groups) return position.div(group_, "floor").to(at::kInt);
    // Original column perm[k] belongs to group k / group_size.
    return at::empty({cols_}, t.dtype(at::kLong))
        .index_copy_(0, perm, position.div(group_, "floor"))
        .to(at::kInt);
  }

  const at::Tensor& scales() const { return scales_; }
  const at::Tensor& zeros() const { return zeros_; }

 private:
  // Writes a grid of rows [r0, r0 + grid rows) into group column g.
  void Record(int64_t r0, int64_t g, const QuantGrid& grid) {
    const int64_t n = grid.scale.size(0);
    scales_.narrow(0, r0, n).select(1, g).copy_(grid.scale);
    zeros_.narrow(0, r0, n).select(1, g).copy_(grid.zero);
  }

  const GptqOptions& o_;
  const int64_t cols_;
  const int64_t group_;
  int64_t num_groups_ = 0;
  // [rows, num_groups], compute dtype. Row chunks write disjoint rows.
  at::Tensor scales_, zeros_;
  std::vector<int64_t> perm_;  // act-order permutation, static groups only
};

absl::StatusOr<GptqResult> GptqImpl(const at::Tensor& weight, const at::Tensor& hessian,
                                    const GptqOptions& o) {
  const int64_t rows = weight.size(0);
  const int64_t cols = weight.size(1);
  GptqResult r;
  at::Tensor w, h, inv_perm;
  std::unique_ptr<GroupGrids> grids;
  BAQ_RETURN_IF_ERROR(CallTorch("GPTQ prepare", [&] {
    w = weight.to(o.compute_dtype, /*non_blocking=*/false, /*copy=*/true);
    quant_internal::PreparedHessian p = quant_internal::PrepareHessian(hessian, o.compute_dtype);
    h = std::move(p.h);
    grids = std::make_unique<GroupGrids>(o, rows, cols, w.options());
    if (o.group_size == -1) grids->SetWholeRow(w);
    w.index_fill_(1, p.dead.nonzero().view(-1), 0);
    r.perm = at::arange(cols, w.options().dtype(at::kLong));
    if (o.act_order) {
      r.perm = quant_internal::ActOrderPermutation(h);
      inv_perm = at::argsort(r.perm);
    }
    if (o.static_groups) {
      std::vector<int64_t> perm;
      if (o.act_order) {
        const at::Tensor p_cpu = r.perm.cpu();
        perm.assign(p_cpu.data_ptr<int64_t>(), p_cpu.data_ptr<int64_t>() + cols);
      }
      grids->SetStatic(w, std::move(perm));
    }
    if (o.act_order) h = h.index_select(0, r.perm).index_select(1, r.perm);
  }));
  BAQ_ASSIGN_OR_RETURN(quant_internal::InverseFactor f,
                       quant_internal::InverseHessianFactor(h, o.percdamp, o.damp_auto_increment));
  r.percdamp = f.percdamp;
  r.damp = f.damp;
  BAQ_RETURN_IF_ERROR(CallTorch("GPTQ loop", [&] {
    at::Tensor wt = (o.act_order ? w.index_select(1, r.perm) : w).t().contiguous();
    quant_internal::LoopResult loop = quant_internal::RunGptqLoop(
        wt, f.hinv, o.block_size, [&](int64_t r0, int64_t r1) { return grids->ForRows(r0, r1); });
    r.weight = quant_internal::UnpermuteTransposed(loop.qt, inv_perm).to(at::kFloat);
    r.codes = quant_internal::UnpermuteTransposed(loop.codes_t, inv_perm);
    r.column_loss = inv_perm.defined() ? loop.loss.index_select(0, inv_perm) : loop.loss;
    r.scales = grids->scales().to(at::kFloat);
    r.zeros = grids->zeros().to(at::kFloat);
    r.g_idx = grids->GroupIndex(r.perm, w.options());
  }));
  BAQ_RETURN_IF_ERROR(quant_internal::CheckFiniteResult(r.weight, "GPTQ result"));
  if (o.compute_proxy_loss) {
    BAQ_ASSIGN_OR_RETURN(r.proxy_loss, CallTorch("GPTQ proxy loss", [&] {
                           return quant_internal::ProxyLossUnchecked(weight, r.weight, hessian);
                         }));
  }
  return r;
}

}  // namespace

absl::StatusOr<GptqResult> Gptq(const at::Tensor& weight, const at::Tensor& hessian,
                                const GptqOptions& options) {
  BAQ_RETURN_IF_ERROR(CheckOptions(options));
  BAQ_RETURN_IF_ERROR(quant_internal::CheckLayer(weight, hessian));
  return GptqImpl(weight, hessian, options);
}

absl::StatusOr<double> ProxyLoss(const at::Tensor& weight, const at::Tensor& quantized,
                                 const at::Tensor& hessian) {
  BAQ_RETURN_IF_ERROR(quant_internal::CheckLayer(weight, hessian));
  BAQ_RETURN_IF_ERROR(CheckFiniteMatrix(quantized, "quantized"));
  if (!quantized.sizes().equals(weight.sizes())) {
    return absl::InvalidArgumentError(absl::StrCat("quantized ", ShapeString(quantized),
                                                   " does not match weight ", ShapeString(weight)));
  }
  return CallTorch("ProxyLoss", [&] {
    return quant_internal::ProxyLossUnchecked(weight, quantized.to(weight.device()), hessian);
  });
}

}  // namespace baq::worker
