// tests/worker/quant/reference_quant.h
//
// Float64 reference implementations for the quantization tests: literal,
// element-by-element transcriptions of IST-DASLab/gptq (quant.py `Quantizer`,
// `quantize`; gptq.py `fasterquant`) and CSU-ModelCompression/BAQ
// (gptq_baq.py `fasterquant` with given levels), written independently of
// worker/quant so the tests compare two implementations. Only the Cholesky
// steps use LibTorch (as the reference code does). Slow: small shapes only.
// Also the fixture code the GPTQ and BAQ tests share (random Hessians, the
// one-vs-two-threads determinism run).
#ifndef BAQ_TESTS_WORKER_QUANT_REFERENCE_QUANT_H_
#define BAQ_TESTS_WORKER_QUANT_REFERENCE_QUANT_H_

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace baq::worker::testing {

using Matrix = std::vector<std::vector<double>>;  // [rows][cols]

inline Matrix ToMatrix(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kDouble).contiguous();
  Matrix m(c.size(0), std::vector<double>(c.size(1)));
  auto a = c.accessor<double, 2>();
  for (int64_t i = 0; i < c.size(0); ++i)
    for (int64_t j = 0; j < c.size(1); ++j) m[i][j] = a[i][j];
  return m;
}

inline at::Tensor ToTensor(const Matrix& m) {
  at::Tensor t =
      at::empty({static_cast<int64_t>(m.size()), static_cast<int64_t>(m[0].size())}, at::kDouble);
  auto a = t.accessor<double, 2>();
  for (size_t i = 0; i < m.size(); ++i)
    for (size_t j = 0; j < m[0].size(); ++j) a[i][j] = m[i][j];
  return t;
}

// One row's grid, quant.py semantics generalized to `levels` (maxq = levels-1).
struct RefGrid {
  double scale = 0, zero = 0;
  int maxq = 0;
};

inline RefGrid RefRowGrid(double lo, double hi, int levels, bool sym) {
  double xmin = std::min(lo, 0.0), xmax = std::max(hi, 0.0);
  if (sym) {
    xmax = std::max(std::fabs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) xmin = -1, xmax = 1;
  RefGrid g;
  g.maxq = levels - 1;
  if (g.maxq == 0) return RefGrid{xmax - xmin, 0, 0};
  g.scale = (xmax - xmin) / g.maxq;
  g.zero = sym ? (g.maxq + 1) / 2 : std::nearbyint(-xmin / g.scale);  // integer division
  return g;
}

// Grid of each row over columns [c0, c1) of w.
inline std::vector<RefGrid> RefGrids(const Matrix& w, size_t c0, size_t c1, int levels, bool sym) {
  std::vector<RefGrid> out;
  for (const auto& row : w) {
    const auto [lo, hi] = std::minmax_element(row.begin() + c0, row.begin() + c1);
    out.push_back(RefRowGrid(*lo, *hi, levels, sym));
  }
  return out;
}

inline double RefCode(double x, const RefGrid& g) {
  return std::clamp(std::nearbyint(x / g.scale) + g.zero, 0.0, static_cast<double>(g.maxq));
}

struct RefResult {
  Matrix q, codes;           // [rows][cols], original column order
  std::vector<double> loss;  // [cols], original column order
};

struct RefOptions {
  int levels = 8;
  bool sym = false;
  int64_t group_size = -1;
  bool act_order = false;
  bool static_groups = false;
  int64_t block_size = 128;
  double percdamp = 0.01;
  // BAQ mode: per-column levels (original order) on BAQ's row-range grid.
  std::vector<int> baq_levels;
};

// gptq.py fasterquant (or gptq_baq.py fasterquant when baq_levels is set).
inline RefResult RefQuantize(const at::Tensor& weight, const at::Tensor& hessian,
                             const RefOptions& o) {
  Matrix w = ToMatrix(weight);
  Matrix h = ToMatrix(hessian);
  const size_t rows = w.size(), cols = w[0].size();
  const bool baq = !o.baq_levels.empty();
  std::vector<RefGrid> grid;
  if (!baq && o.group_size == -1) grid = RefGrids(w, 0, cols, o.levels, o.sym);
  for (size_t j = 0; j < cols; ++j) {
    if (h[j][j] == 0) {
      h[j][j] = 1;
      for (auto& row : w) row[j] = 0;
    }
  }
  std::vector<std::vector<RefGrid>> static_grids;
  if (o.static_groups) {
    for (size_t c = 0; c < cols; c += o.group_size)
      static_grids.push_back(RefGrids(w, c, std::min(cols, c + o.group_size), o.levels, o.sym));
  }
  std::vector<double> row_lo(rows), row_hi(rows);  // BAQ: range of the zeroed W
  for (size_t r = 0; r < rows; ++r) {
    row_lo[r] = *std::min_element(w[r].begin(), w[r].end());
    row_hi[r] = *std::max_element(w[r].begin(), w[r].end());
  }
  std::vector<int64_t> perm(cols);
  std::iota(perm.begin(), perm.end(), 0);
  if (o.act_order) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return h[a][a] > h[b][b]; });
    Matrix w2 = w, h2 = h;
    for (size_t r = 0; r < rows; ++r)
      for (size_t k = 0; k < cols; ++k) w2[r][k] = w[r][perm[k]];
    for (size_t i = 0; i < cols; ++i)
      for (size_t k = 0; k < cols; ++k) h2[i][k] = h[perm[i]][perm[k]];
    w = w2;
    h = h2;
  }
  double mean_diag = 0;
  for (size_t j = 0; j < cols; ++j) mean_diag += h[j][j];
  const double damp = o.percdamp * mean_diag / cols;
  for (size_t j = 0; j < cols; ++j) h[j][j] += damp;
  const at::Tensor l = at::linalg_cholesky(ToTensor(h));
  const Matrix u = ToMatrix(at::linalg_cholesky(at::cholesky_inverse(l), /*upper=*/true));

  Matrix q(rows, std::vector<double>(cols)), codes = q;
  std::vector<double> loss(cols);
  for (size_t i1 = 0; i1 < cols; i1 += o.block_size) {
    const size_t i2 = std::min(cols, i1 + o.block_size);
    Matrix w1 = w;  // only columns [i1, i2) are used
    Matrix err(rows, std::vector<double>(cols, 0));
    for (size_t i = i1; i < i2; ++i) {
      if (!baq && o.group_size != -1) {
        if (o.static_groups) {
          grid = static_grids[perm[i] / o.group_size];
        } else if (i % o.group_size == 0) {
          grid = RefGrids(w, i, std::min(cols, i + o.group_size), o.levels, o.sym);  // outer W
        }
      }
      const double d = u[i][i];
      for (size_t r = 0; r < rows; ++r) {
        RefGrid g = baq ? RefRowGrid(row_lo[r], row_hi[r], o.baq_levels[perm[i]], false) : grid[r];
        const double c = RefCode(w1[r][i], g);
        const double qv = g.scale * (c - g.zero);
        q[r][i] = qv;
        codes[r][i] = c;
        const double e = (w1[r][i] - qv) / d;
        loss[i] += e * e / 2;
        err[r][i] = e;
        for (size_t j = i; j < i2; ++j) w1[r][j] -= e * u[i][j];
      }
    }
    for (size_t r = 0; r < rows; ++r)
      for (size_t j = i2; j < cols; ++j)
        for (size_t i = i1; i < i2; ++i) w[r][j] -= err[r][i] * u[i][j];
  }
  RefResult out{q, codes, std::vector<double>(cols)};
  for (size_t k = 0; k < cols; ++k) {
    for (size_t r = 0; r < rows; ++r) {
      out.q[r][perm[k]] = q[r][k];
      out.codes[r][perm[k]] = codes[r][k];
    }
    out.loss[perm[k]] = loss[k];
  }
  return out;
}

// A PSD Hessian 2/n X^T X of n random rows whose columns have log-normal
// scales (heterogeneous importance), and `dead` all-zero input columns.
inline at::Tensor RandomHessian(int64_t cols, int64_t n, double log_scale_sd,
                                const std::vector<int64_t>& dead = {}) {
  at::Tensor x =
      at::randn({n, cols}, at::kDouble) * at::exp(at::randn({1, cols}, at::kDouble) * log_scale_sd);
  for (int64_t j : dead) x.select(1, j).zero_();
  return x.t().mm(x) * (2.0 / n);
}

// Runs `quantize` (returning absl::StatusOr<Result>) once with one LibTorch
// thread and once with two, restoring the thread count, so a test can check
// that the results are bitwise identical. An error of either run is returned.
template <typename Fn, typename Result = typename decltype(std::declval<Fn>()())::value_type>
absl::StatusOr<std::array<Result, 2>> ResultsWithOneAndTwoThreads(Fn quantize) {
  const int saved_threads = at::get_num_threads();
  std::array<Result, 2> results;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    EXPECT_EQ(at::get_num_threads(), threads);
    auto got = quantize();
    if (!got.ok()) {
      at::set_num_threads(saved_threads);
      return got.status();
    }
    results[threads - 1] = *std::move(got);
  }
  at::set_num_threads(saved_threads);
  return results;
}

// Asserts (gtest EXPECTs) that the two results of ResultsWithOneAndTwoThreads
// agree bit for bit in every field GPTQ and BAQ results share.
template <typename Result>
void ExpectBitwiseEqual(const Result& a, const Result& b) {
  EXPECT_TRUE(at::equal(a.weight, b.weight));
  EXPECT_TRUE(at::equal(a.codes, b.codes));
  EXPECT_TRUE(at::equal(a.column_loss, b.column_loss));
  EXPECT_EQ(a.proxy_loss, b.proxy_loss);
}

}  // namespace baq::worker::testing

#endif  // BAQ_TESTS_WORKER_QUANT_REFERENCE_QUANT_H_
