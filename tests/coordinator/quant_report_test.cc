#include "coordinator/quant_report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "nlohmann/json.hpp"

namespace baq::coordinator {
namespace {

nlohmann::json Layers() {
  return nlohmann::json::array({{{"name", "a"}, {"columns", 6}}, {{"name", "b"}, {"columns", 4}}});
}

TEST(QuantReportTest, BaqHistogramsReferenceLossesStagesAndVersion) {
  QuantizationConfig q;
  q.method = QuantMethod::kBaq;
  q.target_bits = 2.5;
  QuantReport r(q);
  r.EnterStage("starting");
  r.EnterStage("measuring");
  r.AddAllocation({{"a", {1, 3, 3, 4, 8, 3}, 0}});
  r.EnterStage("quantizing");
  r.EnterStage("measuring");  // Sequential mode comes back: accumulates.
  r.AddReferenceLoss("block 0", 0.25);
  nlohmann::json report = {{"layers", Layers()}};
  r.MergeInto(report);

  EXPECT_EQ(report["tool_version"], std::string(ToolVersion()));
  EXPECT_FALSE(ToolVersion().empty());
  for (const char* stage : {"starting", "measuring", "quantizing"}) {
    ASSERT_TRUE(report["stage_seconds"].contains(stage)) << stage;
    EXPECT_GE(report["stage_seconds"][stage].get<double>(), 0) << stage;
  }
  EXPECT_EQ(report["stage_seconds"].size(), 3u);
  ASSERT_EQ(report["reference_loss"].size(), 1u);
  EXPECT_EQ(report["reference_loss"][0]["scope"], "block 0");
  EXPECT_EQ(report["reference_loss"][0]["loss"], 0.25);

  const nlohmann::json& h = report["layers"][0]["bits_histogram"];
  ASSERT_EQ(h.size(), 4u);  // Levels 1, 3, 4, 8 in increasing order.
  EXPECT_EQ(h[0]["levels"], 1);
  EXPECT_EQ(h[0]["bits"], 0.0);
  EXPECT_EQ(h[1]["levels"], 3);
  EXPECT_EQ(h[1]["columns"], 3);
  EXPECT_DOUBLE_EQ(h[1]["bits"].get<double>(), std::log2(3.0));
  EXPECT_EQ(h[3]["levels"], 8);
  // Layer b's allocation was never added (e.g. restored from a checkpoint):
  // no made-up histogram.
  EXPECT_FALSE(report["layers"][1].contains("bits_histogram"));
}

TEST(QuantReportTest, UniformMethodsGetOneBinAndNoReferenceLoss) {
  QuantizationConfig q;
  q.method = QuantMethod::kGptq;
  q.target_bits = 3;
  QuantReport r(q);
  r.AddAllocation({{"a", {}, 0}});
  nlohmann::json report = {{"layers", Layers()}};
  r.MergeInto(report);
  EXPECT_FALSE(report.contains("reference_loss"));
  EXPECT_TRUE(report["stage_seconds"].empty());
  for (int i = 0; i < 2; ++i) {
    const nlohmann::json& h = report["layers"][i]["bits_histogram"];
    ASSERT_EQ(h.size(), 1u);
    EXPECT_EQ(h[0]["levels"], 8);
    EXPECT_EQ(h[0]["columns"], report["layers"][i]["columns"]);
  }
}

TEST(QuantReportTest, ReallocatedLayerCountsOnce) {
  QuantizationConfig q;
  q.method = QuantMethod::kBaq;
  QuantReport r(q);
  r.AddAllocation({{"a", {2, 2, 2, 2, 2, 2}, 0}});
  r.AddAllocation({{"a", {4, 4, 4, 4, 4, 4}, 0}});
  nlohmann::json report = {{"layers", Layers()}};
  r.MergeInto(report);
  const nlohmann::json& h = report["layers"][0]["bits_histogram"];
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0]["levels"], 4);
  EXPECT_EQ(h[0]["columns"], 6);
}

}  // namespace
}  // namespace baq::coordinator
