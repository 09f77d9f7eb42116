#include "worker/model/rope.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace baq::worker {
namespace {

constexpr double kPi = 3.14159265358979323846;

// arange(0, dim, 2, int64).float() / dim: the exponents of every rope type.
at::Tensor Exponents(int64_t dim, at::Device device) {
  return at::arange(0, dim, 2, at::TensorOptions().dtype(at::kLong).device(device))
             .to(at::kFloat) /
         static_cast<double>(dim);
}

// yarn's find_correction_dim.
double CorrectionDim(double rotations, double dim, double base, double max_positions) {
  return (dim * std::log(max_positions / (rotations * 2 * kPi))) / (2 * std::log(base));
}

}  // namespace

at::Tensor RotaryEmbedding::InvFreq(int64_t seq_len, at::Device device) const {
  const RopeParameters& p = params_;
  const int64_t dim = p.rotary_dim;
  const at::Tensor exponents = Exponents(dim, device);
  const auto base_inv_freq = [&](double base) { return 1.0 / at::pow(base, exponents); };
  if (p.type == "linear") return base_inv_freq(p.theta) / p.factor;
  if (p.type == "dynamic") {
    // _compute_dynamic_ntk_parameters with seq_len = max(seq, max_positions).
    double base = p.theta;
    if (seq_len > p.max_position_embeddings) {
      const double ratio = static_cast<double>(seq_len) /
                           static_cast<double>(p.max_position_embeddings);
      base = p.theta * std::pow(p.factor * ratio - (p.factor - 1),
                                static_cast<double>(dim) / static_cast<double>(dim - 2));
    }
    return base_inv_freq(base);
  }
  if (p.type == "llama3") {
    // _compute_llama3_parameters: keep high frequencies, divide low ones by
    // factor, interpolate between.
    const at::Tensor inv_freq = base_inv_freq(p.theta);
    const double old_context = static_cast<double>(p.original_max_position_embeddings);
    const double low_wavelen = old_context / p.low_freq_factor;
    const double high_wavelen = old_context / p.high_freq_factor;
    const at::Tensor wavelen = (2 * kPi) / inv_freq;
    at::Tensor scaled = at::where(wavelen > low_wavelen, inv_freq / p.factor, inv_freq);
    const at::Tensor smooth =
        (old_context / wavelen - p.low_freq_factor) / (p.high_freq_factor - p.low_freq_factor);
    const at::Tensor smoothed = (1 - smooth) * scaled / p.factor + smooth * scaled;
    const at::Tensor medium = (wavelen < high_wavelen).logical_not().logical_and(
        (wavelen > low_wavelen).logical_not());
    return at::where(medium, smoothed, scaled);
  }
  if (p.type == "yarn") {
    // _compute_yarn_parameters.
    const at::Tensor pos_freqs = at::pow(p.theta, exponents);
    const at::Tensor extrapolation = 1.0 / pos_freqs;
    const at::Tensor interpolation = 1.0 / (p.factor * pos_freqs);
    const double d = static_cast<double>(dim);
    const double original = static_cast<double>(p.original_max_position_embeddings);
    double low = CorrectionDim(p.beta_fast, d, p.theta, original);
    double high = CorrectionDim(p.beta_slow, d, p.theta, original);
    if (p.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, d - 1);
    if (low == high) high += 0.001;  // linear_ramp_factor's singularity guard.
    const at::Tensor ramp =
        at::clamp((at::arange(dim / 2, at::TensorOptions().dtype(at::kFloat).device(device)) -
                   low) / (high - low),
                  0, 1);
    const at::Tensor extrapolation_factor = 1 - ramp;
    return interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
  if (p.type == "longrope") {
    const std::vector<double>& f =
        seq_len > p.original_max_position_embeddings ? p.long_factor : p.short_factor;
    const at::Tensor ext =
        at::tensor(std::vector<float>(f.begin(), f.end()), at::TensorOptions().dtype(at::kFloat))
            .to(device);
    return 1.0 / (ext * at::pow(p.theta, exponents));
  }
  return base_inv_freq(p.theta);  // default
}

std::pair<at::Tensor, at::Tensor> RotaryEmbedding::Tables(int64_t seq, at::Device device,
                                                          at::ScalarType dtype) const {
  const at::Tensor inv_freq = InvFreq(seq, device);
  const at::Tensor positions =
      at::arange(seq, at::TensorOptions().dtype(at::kLong).device(device)).to(at::kFloat);
  const at::Tensor freqs = at::outer(positions, inv_freq);
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  at::Tensor cos = emb.cos(), sin = emb.sin();
  if (params_.attention_factor != 1.0) {
    cos = cos * params_.attention_factor;
    sin = sin * params_.attention_factor;
  }
  return {cos.to(dtype), sin.to(dtype)};
}

at::Tensor RotaryEmbedding::Apply(const at::Tensor& x, const at::Tensor& cos,
                                  const at::Tensor& sin) {
  const int64_t rotary = cos.size(-1);
  const int64_t head_dim = x.size(-1);
  const at::Tensor rot = rotary == head_dim ? x : x.narrow(-1, 0, rotary);
  const int64_t half = rotary / 2;
  const at::Tensor rotated =
      at::cat({-rot.narrow(-1, half, half), rot.narrow(-1, 0, half)}, -1);
  const at::Tensor out = rot * cos + rotated * sin;
  if (rotary == head_dim) return out;
  return at::cat({out, x.narrow(-1, rotary, head_dim - rotary)}, -1);
}

}  // namespace baq::worker
