#include "common/module_allocation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace baq {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

absl::Status ValidateGroups(absl::Span<const ModuleGroup> groups,
                            absl::Span<const int32_t> candidate_bits) {
  if (candidate_bits.empty())
    return absl::InvalidArgumentError("no candidate widths");
  for (size_t k = 0; k < candidate_bits.size(); ++k) {
    if (candidate_bits[k] < 1 || candidate_bits[k] > 16) {
      return absl::InvalidArgumentError(absl::StrCat(
          "candidate width ", candidate_bits[k], " outside [1, 16]"));
    }
    if (k > 0 && candidate_bits[k] <= candidate_bits[k - 1]) {
      return absl::InvalidArgumentError(
          "candidate widths must be strictly increasing");
    }
  }
  if (groups.empty()) return absl::InvalidArgumentError("no module groups");
  for (const ModuleGroup& g : groups) {
    if (g.elements <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("module group ", g.name, ": ", g.elements, " elements"));
    }
    if (g.loss.size() != candidate_bits.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "module group ", g.name, ": ", g.loss.size(), " losses for ",
          candidate_bits.size(), " candidate widths"));
    }
    bool any = false;
    for (double l : g.loss) {
      if (std::isnan(l) || l < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("module group ", g.name, ": loss ", l,
                         " (want finite >= 0 or +inf)"));
      }
      any = any || std::isfinite(l);
    }
    if (!any) {
      return absl::InvalidArgumentError(absl::StrCat(
          "module group ", g.name, ": no candidate width allowed"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view ModuleObjectiveName(ModuleObjective objective) {
  return objective == ModuleObjective::kRaw ? "raw" : "normalized";
}

absl::StatusOr<ModuleObjective> ParseModuleObjective(absl::string_view name) {
  if (name == "normalized") return ModuleObjective::kNormalized;
  if (name == "raw") return ModuleObjective::kRaw;
  return absl::InvalidArgumentError(
      absl::StrCat("module objective \"", name, "\" (want normalized or raw)"));
}

double ModuleReferenceLoss(absl::Span<const double> loss,
                           absl::Span<const int32_t> candidate_bits,
                           double target_bits) {
  // The nearest allowed candidates at or below and at or above the target.
  int lo = -1, hi = -1;
  for (size_t k = 0; k < loss.size(); ++k) {
    if (!std::isfinite(loss[k])) continue;
    if (candidate_bits[k] <= target_bits) lo = static_cast<int>(k);
    if (candidate_bits[k] >= target_bits && hi < 0) hi = static_cast<int>(k);
  }
  double ref = 0;
  if (lo < 0 || hi < 0 || lo == hi) {
    ref = loss[static_cast<size_t>(lo < 0 ? hi : lo)];
  } else if (loss[static_cast<size_t>(lo)] > 0 &&
             loss[static_cast<size_t>(hi)] > 0) {
    const double a = (target_bits - candidate_bits[static_cast<size_t>(lo)]) /
                     (candidate_bits[static_cast<size_t>(hi)] -
                      candidate_bits[static_cast<size_t>(lo)]);
    ref = std::exp2((1 - a) * std::log2(loss[static_cast<size_t>(lo)]) +
                    a * std::log2(loss[static_cast<size_t>(hi)]));
  }
  if (ref > 0) return ref;
  double smallest = kInf;
  for (double l : loss) {
    if (l > 0 && l < smallest) smallest = l;
  }
  return std::isfinite(smallest) ? smallest : 1.0;
}

std::vector<double> NormalizeModuleLosses(
    absl::Span<const double> loss, absl::Span<const int32_t> candidate_bits,
    double target_bits, int64_t elements) {
  const double ref = ModuleReferenceLoss(loss, candidate_bits, target_bits);
  std::vector<double> out(loss.begin(), loss.end());
  // Divide first: l / ref is exactly 1 at the reference, so uniform GPTQ at a
  // candidate target sums to exactly the element count.
  for (double& l : out) {
    if (std::isfinite(l)) l = static_cast<double>(elements) * (l / ref);
  }
  return out;
}

int64_t ModuleBitBudget(double target_bits, int64_t elements) {
  const long double exact = static_cast<long double>(target_bits) * elements;
  return static_cast<int64_t>(std::floor(exact * (1.0L + 1e-12L)));
}

absl::StatusOr<ModuleAllocation> SolveModuleAllocation(
    absl::Span<const ModuleGroup> groups,
    absl::Span<const int32_t> candidate_bits, int64_t budget_bit_elements,
    int64_t max_dp_cells) {
  if (absl::Status s = ValidateGroups(groups, candidate_bits); !s.ok())
    return s;
  const size_t num_groups = groups.size();
  const size_t num_k = candidate_bits.size();
  // Each group pays its narrowest allowed width up front; the DP spends the
  // rest, in increments inc[g][k] = e_g * (bits_k - bits_base).
  std::vector<int64_t> base(num_groups);
  std::vector<std::vector<int64_t>> inc(num_groups,
                                        std::vector<int64_t>(num_k, -1));
  int64_t base_sum = 0, elements = 0, unit = 0;
  for (size_t g = 0; g < num_groups; ++g) {
    size_t first = 0;
    while (!std::isfinite(groups[g].loss[first])) ++first;
    base[g] = groups[g].elements * candidate_bits[first];
    base_sum += base[g];
    elements += groups[g].elements;
    for (size_t k = first; k < num_k; ++k) {
      if (!std::isfinite(groups[g].loss[k])) continue;
      inc[g][k] = groups[g].elements * candidate_bits[k] - base[g];
      unit = std::gcd(unit, inc[g][k]);
    }
  }
  if (budget_bit_elements < base_sum) {
    return absl::OutOfRangeError(
        absl::StrCat("module allocation: budget of ", budget_bit_elements,
                     " bit-elements is below the ", base_sum,
                     " of every module at its narrowest allowed width"));
  }
  const int64_t spare = budget_bit_elements - base_sum;
  if (unit == 0) unit = 1;  // Every group has one allowed width.
  // Coarsen only if the exact table is too large (see the header).
  bool exact = true;
  const int64_t groups64 = static_cast<int64_t>(num_groups);
  while (groups64 * (spare / unit + 1) >
         std::max<int64_t>(max_dp_cells, groups64)) {
    const int64_t states = spare / unit + 1;
    const int64_t factor =
        std::max<int64_t>(2, (groups64 * states) / max_dp_cells + 1);
    unit *= factor;
    exact = false;
  }
  const int64_t states = spare / unit + 1;
  // Increments in units, rounded up (a no-op when exact).
  std::vector<std::vector<int64_t>> w(num_groups,
                                      std::vector<int64_t>(num_k, -1));
  for (size_t g = 0; g < num_groups; ++g) {
    for (size_t k = 0; k < num_k; ++k) {
      if (inc[g][k] >= 0) w[g][k] = (inc[g][k] + unit - 1) / unit;
    }
  }
  // cur[s]: minimum loss of the groups so far using exactly s units;
  // pick[g * states + s]: the candidate group g took on that path.
  std::vector<double> cur(static_cast<size_t>(states), kInf), next(cur.size());
  std::vector<uint8_t> pick(num_groups * static_cast<size_t>(states), 0);
  cur[0] = 0;
  for (size_t g = 0; g < num_groups; ++g) {
    std::fill(next.begin(), next.end(), kInf);
    uint8_t* row = pick.data() + g * static_cast<size_t>(states);
    for (size_t k = 0; k < num_k; ++k) {
      const int64_t wk = w[g][k];
      if (wk < 0 || wk >= states) continue;
      const double lk = groups[g].loss[k];
      for (int64_t s = wk; s < states; ++s) {
        const double v = cur[static_cast<size_t>(s - wk)] + lk;
        if (v < next[static_cast<size_t>(
                    s)]) {  // Strict: the narrower k wins ties.
          next[static_cast<size_t>(s)] = v;
          row[s] = static_cast<uint8_t>(k);
        }
      }
    }
    cur.swap(next);
  }
  int64_t best = -1;
  for (int64_t s = 0; s < states; ++s) {
    if (std::isfinite(cur[static_cast<size_t>(s)]) &&
        (best < 0 ||
         cur[static_cast<size_t>(s)] <= cur[static_cast<size_t>(best)])) {
      best = s;  // <=: the fullest budget among equal losses.
    }
  }
  if (best < 0) {
    return absl::InternalError(
        "module allocation: no feasible DP state");  // s = 0 always is.
  }
  ModuleAllocation out;
  out.choice.resize(num_groups);
  out.loss = cur[static_cast<size_t>(best)];
  out.elements = elements;
  out.unit = unit;
  out.exact = exact;
  int64_t s = best;
  for (size_t g = num_groups; g-- > 0;) {
    const uint8_t k =
        pick[g * static_cast<size_t>(states) + static_cast<size_t>(s)];
    out.choice[g] = k;
    s -= w[g][k];
  }
  for (size_t g = 0; g < num_groups; ++g) {
    out.bit_elements +=
        groups[g].elements * candidate_bits[static_cast<size_t>(out.choice[g])];
  }
  return out;
}

}  // namespace baq
