// `baq inspect`: the per-layer bit allocation of a baq output dir, from its
// quant_report.json and, for packed outputs, the stored level counts.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/safetensors_checkpoint.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tools/cli/local_commands.h"

namespace baq::cli {
namespace {

// Histogram of log2(levels), as text: "2:10% 3:70% 4:20%".
std::string Histogram(const int32_t* levels, int64_t n) {
  std::map<int32_t, int64_t> counts;
  for (int64_t i = 0; i < n; ++i) ++counts[levels[i]];
  std::string out;
  for (const auto& [l, c] : counts) {
    absl::StrAppendFormat(&out, "%s%.2fb:%.0f%%", out.empty() ? "" : " ", std::log2(l),
                          100.0 * static_cast<double>(c) / static_cast<double>(n));
  }
  return out;
}

absl::Status InspectDir(const std::string& dir) {
  std::ifstream in(dir + "/quant_report.json");
  if (!in) return absl::NotFoundError(absl::StrCat(dir, ": no quant_report.json (not a baq output)"));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json report = nlohmann::json::parse(ss.str(), nullptr, false);
  if (report.is_discarded()) return absl::InvalidArgumentError(dir + "/quant_report.json: bad JSON");
  std::printf("%s: format %s, method %s, %s allocation, %.4f bits (target %.4f)\n", dir.c_str(),
              report.value("format", "?").c_str(), report.value("method", "?").c_str(),
              report.value("allocation", "?").c_str(), report.value("achieved_bits", 0.0),
              report.value("target_bits", 0.0));
  std::unique_ptr<SafetensorsCheckpoint> ckpt;
  if (report.value("format", "") == "packed") {
    BAQ_ASSIGN_OR_RETURN(ckpt, SafetensorsCheckpoint::Open(dir));
  }
  std::printf("%-48s %10s %7s %12s  %s\n", "layer", "elements", "bits", "proxy_loss",
              ckpt ? "bits histogram (share of columns)" : "");
  for (const nlohmann::json& l : report.value("layers", nlohmann::json::array())) {
    const std::string name = l.value("name", "?");
    std::string hist;
    if (ckpt) {
      BAQ_ASSIGN_OR_RETURN(TensorView v, ckpt->Get(name + ".levels"));
      hist = Histogram(reinterpret_cast<const int32_t*>(v.bytes.data()), v.NumElements());
    }
    std::printf("%-48s %10lld %7.3f %12.5g  %s\n", name.c_str(),
                static_cast<long long>(l.value("rows", 0LL) * l.value("columns", 0LL)),
                l.value("bits", 0.0), l.value("proxy_loss", 0.0), hist.c_str());
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunInspect(const std::string& output_dir) {
  namespace fs = std::filesystem;
  if (fs::exists(output_dir + "/quant_report.json")) return InspectDir(output_dir);
  bool any = false;
  for (const char* f : {"fake-quant", "packed", "gptq"}) {
    const std::string sub = absl::StrCat(output_dir, "/", f);
    if (!fs::exists(sub + "/quant_report.json")) continue;
    BAQ_RETURN_IF_ERROR(InspectDir(sub));
    any = true;
  }
  if (!any) return absl::NotFoundError(absl::StrCat(output_dir, ": not a baq output dir"));
  return absl::OkStatus();
}

}  // namespace baq::cli
