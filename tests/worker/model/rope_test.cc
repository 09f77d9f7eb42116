#include "worker/model/rope.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/model_config.h"
#include "common/rope_parameters.h"
#include "common/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_paths.h"
#include "worker/model/tensor_convert.h"

namespace baq::worker {
namespace {

using Json = nlohmann::json;

constexpr double kPi = 3.14159265358979323846;
// inv_freq is computed in float32 as transformers does: theta^x rounds with a
// relative error of about |x ln theta| * 2^-24 (< 1e-6 for theta <= 1e6).
constexpr double kInvFreqRtol = 2e-6;
// cos/sin of position * inv_freq for positions < 256: the float32 angle is off
// by up to 256 * inv_freq * 2^-24 * a few.
constexpr double kTableAtol = 5e-5;

// An independent float64 reading of transformers' modeling_rope_utils.py.
std::vector<double> ReferenceInvFreq(const RopeParameters& p, int64_t seq) {
  const int64_t dim = p.rotary_dim, half = dim / 2;
  double theta = p.theta;
  if (p.type == "dynamic" && seq > p.max_position_embeddings) {
    theta *= std::pow(p.factor * seq / static_cast<double>(p.max_position_embeddings) -
                          (p.factor - 1),
                      dim / (dim - 2.0));
  }
  double low = 0, high = 0;
  if (p.type == "yarn") {
    const auto correction = [&](double rotations) {
      return dim * std::log(p.original_max_position_embeddings / (rotations * 2 * kPi)) /
             (2 * std::log(p.theta));
    };
    low = correction(p.beta_fast);
    high = correction(p.beta_slow);
    if (p.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, dim - 1.0);
    if (low == high) high += 0.001;
  }
  std::vector<double> out;
  for (int64_t i = 0; i < half; ++i) {
    const double inv = 1.0 / std::pow(theta, 2.0 * i / dim);
    if (p.type == "linear") {
      out.push_back(inv / p.factor);
    } else if (p.type == "llama3") {
      const double wavelen = 2 * kPi / inv;
      const double old = static_cast<double>(p.original_max_position_embeddings);
      if (wavelen < old / p.high_freq_factor) {
        out.push_back(inv);
      } else if (wavelen > old / p.low_freq_factor) {
        out.push_back(inv / p.factor);
      } else {
        const double s = (old / wavelen - p.low_freq_factor) /
                         (p.high_freq_factor - p.low_freq_factor);
        out.push_back((1 - s) * inv / p.factor + s * inv);
      }
    } else if (p.type == "yarn") {
      const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
      out.push_back(inv / p.factor * ramp + inv * (1 - ramp));
    } else if (p.type == "longrope") {
      const std::vector<double>& f =
          seq > p.original_max_position_embeddings ? p.long_factor : p.short_factor;
      out.push_back(inv / f[static_cast<size_t>(i)]);
    } else {
      out.push_back(inv);
    }
  }
  return out;
}

RopeParameters Parse(const std::string& config_json, int64_t head_dim = 16,
                     const std::string& model_type = "llama") {
  const Json j = Json::parse(config_json);
  const int64_t max_pos = j.value("max_position_embeddings", int64_t{2048});
  absl::StatusOr<RopeParameters> p =
      ParseRopeParameters(j, model_type, "", 10000.0, head_dim, max_pos, "test/config.json");
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : RopeParameters{};
}

void ExpectMatchesReference(const RopeParameters& p, int64_t seq) {
  SCOPED_TRACE(p.type + " seq " + std::to_string(seq));
  RotaryEmbedding rope(p);
  const std::vector<double> ref = ReferenceInvFreq(p, seq);
  const at::Tensor inv = rope.InvFreq(seq, at::kCPU).to(at::kDouble);
  ASSERT_EQ(inv.size(0), static_cast<int64_t>(ref.size()));
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_NEAR(inv[static_cast<int64_t>(i)].item<double>(), ref[i], kInvFreqRtol * ref[i])
        << "inv_freq " << i;
  }
  auto [cos, sin] = rope.Tables(seq, at::kCPU, at::kFloat);
  ASSERT_EQ(cos.sizes(), at::IntArrayRef({seq, p.rotary_dim}));
  const int64_t half = p.rotary_dim / 2;
  double worst = 0;
  for (int64_t pos = 0; pos < seq; pos += 7) {
    for (int64_t i = 0; i < p.rotary_dim; ++i) {
      const double angle = pos * ref[static_cast<size_t>(i % half)];
      worst = std::max({worst,
                        std::abs(cos[pos][i].item<double>() - std::cos(angle) * p.attention_factor),
                        std::abs(sin[pos][i].item<double>() - std::sin(angle) * p.attention_factor)});
    }
  }
  EXPECT_LE(worst, kTableAtol * p.attention_factor);
}

TEST(RopeTest, DefaultAndLinear) {
  ExpectMatchesReference(Parse(R"({"rope_theta": 10000.0})"), 256);
  const RopeParameters linear =
      Parse(R"({"rope_scaling": {"type": "linear", "factor": 4.0}, "rope_theta": 5e5})");
  EXPECT_EQ(linear.type, "linear");
  ExpectMatchesReference(linear, 256);
}

TEST(RopeTest, DynamicNtkChangesOnlyBeyondMaxPositions) {
  const RopeParameters p = Parse(
      R"({"max_position_embeddings": 128,
          "rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}})");
  ExpectMatchesReference(p, 64);
  ExpectMatchesReference(p, 256);
  RotaryEmbedding rope(p);
  EXPECT_TRUE(at::equal(rope.InvFreq(64, at::kCPU), rope.InvFreq(128, at::kCPU)));
  EXPECT_FALSE(at::equal(rope.InvFreq(64, at::kCPU), rope.InvFreq(256, at::kCPU)));
}

TEST(RopeTest, Llama3CoversAllThreeBands) {
  // Llama-3.1's values; head_dim 16 puts frequencies in each band.
  const RopeParameters p = Parse(
      R"({"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192}})");
  ExpectMatchesReference(p, 256);
  EXPECT_DOUBLE_EQ(p.attention_factor, 1.0);
}

TEST(RopeTest, YarnAttentionFactorAndRamp) {
  const RopeParameters p = Parse(
      R"({"max_position_embeddings": 131072, "rope_parameters": {"rope_type": "yarn",
          "factor": 4.0, "rope_theta": 1e6, "original_max_position_embeddings": 32768}})");
  EXPECT_NEAR(p.attention_factor, 0.1 * std::log(4.0) + 1, 1e-15);
  ExpectMatchesReference(p, 256);
  // DeepSeek-style mscale, fractional ramp ends (truncate false), factor
  // from max / original positions.
  const RopeParameters m = Parse(
      R"({"max_position_embeddings": 4000, "rope_scaling": {"type": "yarn", "mscale": 1.0,
          "mscale_all_dim": 0.707, "truncate": false, "original_max_position_embeddings": 100,
          "beta_fast": 0}})");
  EXPECT_DOUBLE_EQ(m.factor, 40.0);
  EXPECT_DOUBLE_EQ(m.beta_fast, 32.0);  // `or 32`: 0 means the default.
  EXPECT_NEAR(m.attention_factor, (0.1 * std::log(40.0) + 1) / (0.0707 * std::log(40.0) + 1),
              1e-15);
  EXPECT_FALSE(m.truncate);
  ExpectMatchesReference(m, 64);
}

TEST(RopeTest, LongropeSwitchesFactorsAndPartialRotary) {
  // Phi-3 reads original_max_position_embeddings from the top level and
  // applies partial_rotary_factor (Phi-4-mini: 0.75 of head_dim 16 = 12).
  const RopeParameters p = Parse(
      R"({"max_position_embeddings": 128, "original_max_position_embeddings": 32,
          "partial_rotary_factor": 0.75, "rope_scaling": {"type": "longrope",
          "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5],
          "long_factor": [1.0, 1.5, 2.5, 4.0, 6.0, 9.0]}})",
      16, "phi3");
  EXPECT_EQ(p.rotary_dim, 12);
  EXPECT_NEAR(p.attention_factor, std::sqrt(1 + std::log(4.0) / std::log(32.0)), 1e-15);
  ExpectMatchesReference(p, 32);  // Short factors.
  ExpectMatchesReference(p, 64);  // Long factors.
}

TEST(RopeTest, ApplyRotatesHalvesAndPassesTheRest) {
  // head_dim 6 with rotary_dim 4: x = [a0 a1 b0 b1 | p0 p1].
  const at::Tensor x = at::arange(1, 7, at::kFloat).view({1, 6});
  const at::Tensor cos = at::full({1, 4}, 0.5);
  const at::Tensor sin = at::full({1, 4}, 2.0);
  const at::Tensor y = RotaryEmbedding::Apply(x, cos, sin);
  // rotate_half([1 2 3 4]) = [-3 -4 1 2].
  const std::vector<float> expected = {0.5f - 6, 1 - 8, 1.5f + 2, 2 + 4, 5, 6};
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(y[0][i].item<float>(), expected[i]) << i;
}

TEST(RopeTest, RejectsBadParameters) {
  const Json base = Json::parse(R"({"max_position_embeddings": 2048})");
  const auto parse = [&](const Json& rope) {
    Json j = base;
    j["rope_scaling"] = rope;
    return ParseRopeParameters(j, "llama", "", 1e4, 16, 2048, "test/config.json");
  };
  EXPECT_EQ(parse({{"type", "mrope"}}).status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(parse({{"type", "linear"}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parse({{"type", "llama3"}, {"factor", 8}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parse({{"type", "longrope"}, {"short_factor", {1, 2}}, {"long_factor", {1, 2}}})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);  // Needs rotary_dim / 2 = 8 factors.
}

// transformers' own tables (tools/golden/make_arch_goldens.py writes them).
TEST(RopeTest, MatchesTransformersTables) {
  const std::string dir = ::baq::testing::SourceDir() + "/tests/worker/model/testdata/arch";
  std::ifstream configs_file(dir + "/rope_goldens.json");
  if (!configs_file) {
    GTEST_SKIP() << "no " << dir << "/rope_goldens.json: run "
                 << "tools/golden/make_arch_goldens.py tests/worker/model/testdata/arch";
  }
  const Json configs = Json::parse(configs_file);
  auto file = SafetensorsFile::Open(dir + "/rope_goldens.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  const auto golden = [&](const std::string& name) {
    absl::StatusOr<TensorView> view = (*file)->Get(name);
    EXPECT_TRUE(view.ok()) << view.status();
    absl::StatusOr<at::Tensor> t = CopyTensorFromView(*view, at::kCPU, at::kDouble);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : at::Tensor();
  };
  for (const auto& [name, config] : configs.items()) {
    SCOPED_TRACE(name);
    absl::StatusOr<ModelConfig> c = ParseModelConfig(config.dump(), name);
    ASSERT_TRUE(c.ok()) << c.status();
    RotaryEmbedding rope(c->rope);
    for (int64_t seq : {64, 256}) {
      const std::string key = name + "." + std::to_string(seq);
      const at::Tensor inv = rope.InvFreq(seq, at::kCPU).to(at::kDouble);
      EXPECT_LE((inv - golden(key + ".inv_freq")).abs().max().item<double>(),
                1e-7 * golden(key + ".inv_freq").abs().max().item<double>())
          << key;
      EXPECT_NEAR(rope.attention_factor(), golden(key + ".attention_scaling")[0].item<double>(),
                  1e-7)
          << key;
      auto [cos, sin] = rope.Tables(seq, at::kCPU, at::kFloat);
      EXPECT_LE((cos.to(at::kDouble) - golden(key + ".cos")).abs().max().item<double>(), 1e-5)
          << key;
      EXPECT_LE((sin.to(at::kDouble) - golden(key + ".sin")).abs().max().item<double>(), 1e-5)
          << key;
    }
  }
}

}  // namespace
}  // namespace baq::worker
