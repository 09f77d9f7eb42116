// `baq inspect`: the per-layer bit allocation of a baq output dir, from its
// quant_report.json and, for packed outputs, the stored level counts.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/safetensors_checkpoint.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tools/cli/local_commands.h"

namespace baq::cli {
namespace {

// Share of columns per log2(levels), e.g. {"2.00": 0.1, "3.00": 0.7}.
std::map<std::string, double> Histogram(const int32_t* levels, int64_t n) {
  std::map<int32_t, int64_t> counts;
  for (int64_t i = 0; i < n; ++i) ++counts[levels[i]];
  std::map<std::string, double> shares;
  for (const auto& [l, c] : counts) {
    shares[absl::StrFormat("%.2f", std::log2(l))] =
        static_cast<double>(c) / static_cast<double>(n);
  }
  return shares;
}

// As text: "2.00b:10% 3.00b:70% 4.00b:20%".
std::string HistogramText(const nlohmann::json& shares) {
  std::string out;
  for (const auto& [bits, share] : shares.items()) {
    absl::StrAppendFormat(&out, "%s%sb:%.0f%%", out.empty() ? "" : " ", bits,
                          100.0 * share.get<double>());
  }
  return out;
}

// One output dir's summary: {"dir", "format", "method", "allocation",
// "achieved_bits", "target_bits", "layers": [{"name", "elements", "bits",
// "proxy_loss", "bits_histogram" (packed only)}]}.
absl::StatusOr<nlohmann::json> InspectDir(const std::string& dir) {
  std::ifstream in(dir + "/quant_report.json");
  if (!in) return absl::NotFoundError(absl::StrCat(dir, ": no quant_report.json (not a baq output)"));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json report = nlohmann::json::parse(ss.str(), nullptr, false);
  if (report.is_discarded()) return absl::InvalidArgumentError(dir + "/quant_report.json: bad JSON");
  nlohmann::json j = {{"dir", dir},
                      {"format", report.value("format", "?")},
                      {"method", report.value("method", "?")},
                      {"allocation", report.value("allocation", "?")},
                      {"achieved_bits", report.value("achieved_bits", 0.0)},
                      {"target_bits", report.value("target_bits", 0.0)},
                      {"layers", nlohmann::json::array()}};
  std::unique_ptr<SafetensorsCheckpoint> ckpt;
  if (report.value("format", "") == "packed") {
    BAQ_ASSIGN_OR_RETURN(ckpt, SafetensorsCheckpoint::Open(dir));
  }
  for (const nlohmann::json& l : report.value("layers", nlohmann::json::array())) {
    const std::string name = l.value("name", "?");
    nlohmann::json layer = {{"name", name},
                            {"elements", l.value("rows", 0LL) * l.value("columns", 0LL)},
                            {"bits", l.value("bits", 0.0)},
                            {"proxy_loss", l.value("proxy_loss", 0.0)}};
    if (ckpt) {
      BAQ_ASSIGN_OR_RETURN(TensorView v, ckpt->Get(name + ".levels"));
      layer["bits_histogram"] =
          Histogram(reinterpret_cast<const int32_t*>(v.bytes.data()), v.NumElements());
    }
    j["layers"].push_back(std::move(layer));
  }
  return j;
}

void PrintDir(const nlohmann::json& j) {
  std::printf("%s: format %s, method %s, %s allocation, %.4f bits (target %.4f)\n",
              j["dir"].get<std::string>().c_str(), j["format"].get<std::string>().c_str(),
              j["method"].get<std::string>().c_str(), j["allocation"].get<std::string>().c_str(),
              j["achieved_bits"].get<double>(), j["target_bits"].get<double>());
  const bool packed = j["format"] == "packed";
  std::printf("%-48s %10s %7s %12s  %s\n", "layer", "elements", "bits", "proxy_loss",
              packed ? "bits histogram (share of columns)" : "");
  for (const nlohmann::json& l : j["layers"]) {
    std::printf("%-48s %10lld %7.3f %12.5g  %s\n", l["name"].get<std::string>().c_str(),
                static_cast<long long>(l["elements"].get<int64_t>()), l["bits"].get<double>(),
                l["proxy_loss"].get<double>(),
                l.contains("bits_histogram") ? HistogramText(l["bits_histogram"]).c_str() : "");
  }
}

}  // namespace

absl::Status RunInspect(const std::string& output_dir, const OutputOptions& output) {
  namespace fs = std::filesystem;
  std::vector<std::string> dirs;
  if (fs::exists(output_dir + "/quant_report.json")) {
    dirs.push_back(output_dir);
  } else {
    for (const char* f : {"fake-quant", "packed", "gptq"}) {
      const std::string sub = absl::StrCat(output_dir, "/", f);
      if (fs::exists(sub + "/quant_report.json")) dirs.push_back(sub);
    }
  }
  if (dirs.empty()) return absl::NotFoundError(absl::StrCat(output_dir, ": not a baq output dir"));
  nlohmann::json outputs = nlohmann::json::array();
  for (const std::string& dir : dirs) {
    BAQ_ASSIGN_OR_RETURN(nlohmann::json j, InspectDir(dir));
    // Text goes out dir by dir, as before; JSON once, whole.
    if (!output.json) PrintDir(j);
    outputs.push_back(std::move(j));
  }
  if (output.json) PrintJson(stdout, {{"ok", true}, {"outputs", std::move(outputs)}});
  return absl::OkStatus();
}

}  // namespace baq::cli
