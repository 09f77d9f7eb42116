// End-to-end `--allocation module` in local mode on the bundled OPT fixture:
// at 2, 3 and 4 bits the chosen per-module widths have a normalized loss
// (the objective: each layer's loss relative to its uniform GPTQ loss at the
// target, weighted by its elements) <= that of uniform GPTQ at the target
// (uniform is one of the feasible choices), the average stays <= target,
// q/k/v share one width, every layer's quantization is exactly GPTQ at its
// width (its proxy loss equals the uniform job's at that width), and the
// report lists the width of every module. Sequential mode keeps the same
// promises per block and writes the gptq format with one width per module.
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "common/safetensors_checkpoint.h"
#include "coordinator/job_runner.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/local_job.h"
#include "tests/testing/test_paths.h"

namespace baq {
namespace {

using testing::ReadJsonFile;
using testing::RunLocalJob;

// Both jobs sum the same per-layer GPTQ losses, in different orders.
constexpr double kLossRtol = 1e-12;

// Layer name -> its report entry.
std::map<std::string, nlohmann::json> Layers(const nlohmann::json& report) {
  std::map<std::string, nlohmann::json> out;
  for (const nlohmann::json& l : report["layers"])
    out[l["name"].get<std::string>()] = l;
  return out;
}

void ExpectTiedAttention(const std::map<std::string, nlohmann::json>& layers) {
  for (int b = 0; b < 6; ++b) {
    const std::string p =
        "model.decoder.layers." + std::to_string(b) + ".self_attn.";
    const int q = layers.at(p + "q_proj")["gptq_bits"];
    EXPECT_EQ(layers.at(p + "k_proj")["gptq_bits"], q) << p;
    EXPECT_EQ(layers.at(p + "v_proj")["gptq_bits"], q) << p;
  }
}

TEST(LocalModuleQuantizeTest, NeverLosesToUniformGptqAtTwoThreeAndFourBits) {
  const std::string dir = testing::MakeScratchDir();
  JobConfig module = testing::ExampleFixtureJob(dir + "/module");
  module.mode = ExecutionMode::kParallel;
  module.quant.allocation_scope = AllocationScope::kModule;
  module.quant.target_bits = 2;
  module.extra_target_bits = {3, 4};
  JobConfig uniform = module;
  uniform.output_dir = dir + "/uniform";
  uniform.quant.method = QuantMethod::kGptq;
  uniform.quant.allocation_scope = AllocationScope::kGlobal;

  absl::StatusOr<coordinator::JobSummary> m = RunLocalJob(module);
  ASSERT_TRUE(m.ok()) << m.status();
  absl::StatusOr<coordinator::JobSummary> u = RunLocalJob(uniform);
  ASSERT_TRUE(u.ok()) << u.status();
  ASSERT_EQ(m->targets.size(), 3u);
  ASSERT_EQ(u->targets.size(), 3u);

  // Per-layer GPTQ losses at every uniform width, by layer name.
  std::map<int, std::map<std::string, nlohmann::json>> at_width;
  for (const coordinator::TargetSummary& t : u->targets) {
    at_width[static_cast<int>(t.target_bits)] =
        Layers(ReadJsonFile(t.output_dir + "/quant_report.json"));
  }
  for (size_t i = 0; i < 3; ++i) {
    const coordinator::TargetSummary& mt = m->targets[i];
    const coordinator::TargetSummary& ut = u->targets[i];
    SCOPED_TRACE(mt.target_bits);
    EXPECT_EQ(m->allocation, "module");
    EXPECT_LE(mt.achieved_bits, mt.target_bits);
    EXPECT_DOUBLE_EQ(ut.achieved_bits, ut.target_bits);

    const nlohmann::json report =
        ReadJsonFile(mt.output_dir + "/quant_report.json");
    const std::map<std::string, nlohmann::json> layers = Layers(report);
    ExpectTiedAttention(layers);
    // The objective in float64, from the two reports: uniform GPTQ's loss
    // of each layer at the target is its reference, so uniform scores 1.
    const std::map<std::string, nlohmann::json>& uniform =
        at_width[static_cast<int>(mt.target_bits)];
    double normalized = 0, elements = 0;
    for (const auto& [name, l] : layers) {
      const double e = l["rows"].get<double>() * l["columns"].get<double>();
      normalized += e * l["proxy_loss"].get<double>() /
                    uniform.at(name)["proxy_loss"].get<double>();
      elements += e;
    }
    normalized /= elements;
    EXPECT_LE(normalized, 1 + kLossRtol);
    std::printf(
        "target %g: module %.6g (normalized %.6g) at %.4f bits, uniform GPTQ "
        "%.6g (normalized 1)\n",
        mt.target_bits, mt.total_proxy_loss, normalized, mt.achieved_bits,
        ut.total_proxy_loss);
    for (const auto& [name, l] : layers) {
      const int bits = l["gptq_bits"];
      EXPECT_DOUBLE_EQ(l["bits"].get<double>(), bits) << name;
      // GPTQ at the module's width: exactly the uniform job's loss there.
      if (at_width.count(bits) > 0) {
        EXPECT_EQ(l["proxy_loss"].get<double>(),
                  at_width[bits].at(name)["proxy_loss"].get<double>())
            << name << " at " << bits << " bits";
      }
    }
    const nlohmann::json& alloc = report["module_allocation"];
    EXPECT_EQ(alloc["modules"].size(),
              6u * 4);  // q/k/v, out_proj, fc1, fc2 per block.
    EXPECT_EQ(alloc["candidate_bits"], nlohmann::json({2, 3, 4, 8}));
    EXPECT_EQ(alloc["objective"], "normalized");
    ASSERT_EQ(alloc["solves"].size(), 1u);
    EXPECT_TRUE(alloc["solves"][0]["exact"].get<bool>());
    EXPECT_NEAR(alloc["solves"][0]["proxy_loss"].get<double>(),
                mt.total_proxy_loss, kLossRtol * mt.total_proxy_loss);
    EXPECT_NEAR(alloc["solves"][0]["relative_loss"].get<double>(), normalized,
                kLossRtol * normalized);
    ASSERT_EQ(mt.modules.size(), 24u);
    EXPECT_EQ(mt.modules[0].layers.size(), 3u);  // q/k/v.
  }
}

TEST(LocalModuleQuantizeTest,
     SequentialStaysWithinTheTargetAndWritesGptqPerModule) {
  const std::string out = testing::MakeScratchDir() + "/out";
  JobConfig config = testing::ExampleFixtureJob(out);
  config.quant.allocation_scope = AllocationScope::kModule;
  config.quant.target_bits = 2.5;
  config.formats = {OutputFormat::kFakeQuant, OutputFormat::kGptq};
  absl::StatusOr<coordinator::JobSummary> s = RunLocalJob(config);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->allocation, "module");
  EXPECT_LE(s->achieved_bits, 2.5);
  EXPECT_GT(s->achieved_bits, 2.0);  // Carried budget is spent, not dropped.
  const nlohmann::json report =
      ReadJsonFile(out + "/fake-quant/quant_report.json");
  const std::map<std::string, nlohmann::json> layers = Layers(report);
  ExpectTiedAttention(layers);
  EXPECT_EQ(report["module_allocation"]["solves"].size(),
            6u);  // One per block.
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> gptq =
      SafetensorsCheckpoint::Open(out + "/gptq");
  ASSERT_TRUE(gptq.ok()) << gptq.status();
  for (const auto& [name, l] : layers) {
    const int bits = l["gptq_bits"];
    absl::StatusOr<TensorInfo> qw = (*gptq)->Info(name + ".qweight");
    ASSERT_TRUE(qw.ok()) << name;
    EXPECT_EQ(qw->shape[0], l["columns"].get<int64_t>() * bits / 32) << name;
    EXPECT_EQ(report["gptq_module_bits"][name], bits);
  }
}

}  // namespace
}  // namespace baq
