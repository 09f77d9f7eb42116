#include "common/measurement_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/durable_file.h"

namespace baq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int kManifestVersion = 1;
constexpr char kManifestName[] = "measurement.json";

// {"size": bytes, "mtime_ns": ...} of one file; NotFound naming it.
absl::StatusOr<json> FileIdentity(const std::string& path, absl::string_view what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("measurement fingerprint: ", what, " ", path,
                                            " is not a readable file"));
  }
  const int64_t mtime_ns =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return json{{"path", path}, {"size", static_cast<int64_t>(st.st_size)}, {"mtime_ns", mtime_ns}};
}

// The first key path where `a` and `b` differ, e.g. "calibration.seed".
std::string FirstDifference(const json& a, const json& b, const std::string& prefix) {
  if (a.is_object() && b.is_object()) {
    std::vector<std::string> keys;
    for (auto it = a.begin(); it != a.end(); ++it) keys.push_back(it.key());
    for (auto it = b.begin(); it != b.end(); ++it) {
      if (!a.contains(it.key())) keys.push_back(it.key());
    }
    for (const std::string& k : keys) {
      const std::string path = prefix.empty() ? k : absl::StrCat(prefix, ".", k);
      if (!a.contains(k) || !b.contains(k)) return path;
      std::string d = FirstDifference(a.at(k), b.at(k), path);
      if (!d.empty()) return d;
    }
    return "";
  }
  if (a.is_array() && b.is_array() && a.size() == b.size()) {
    for (size_t i = 0; i < a.size(); ++i) {
      std::string d = FirstDifference(a[i], b[i], absl::StrCat(prefix, "[", i, "]"));
      if (!d.empty()) return d;
    }
    return "";
  }
  return a == b ? "" : (prefix.empty() ? "(root)" : prefix);
}

}  // namespace

absl::StatusOr<json> MeasurementFingerprint(const JobConfig& config) {
  json model_files = json::array();
  std::vector<std::string> names;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(config.model_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name == "config.json" || name == "tokenizer.json" ||
        e.path().extension() == ".safetensors") {
      names.push_back(name);
    }
  }
  if (ec) {
    return absl::NotFoundError(absl::StrCat("measurement fingerprint: cannot list model dir ",
                                            config.model_dir, ": ", ec.message()));
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    absl::StatusOr<json> id = FileIdentity(config.model_dir + "/" + name, "model file");
    if (!id.ok()) return id.status();
    (*id)["path"] = name;  // The same files under another mount still match.
    model_files.push_back(*std::move(id));
  }
  json calibration_files = json::array();
  for (const std::string& f : config.calibration.files) {
    absl::StatusOr<json> id = FileIdentity(f, "calibration file");
    if (!id.ok()) return id.status();
    calibration_files.push_back(*std::move(id));
  }
  json fingerprint = {{"model_files", model_files},
                     {"calibration",
                      {{"files", calibration_files},
                       {"num_samples", config.calibration.num_samples},
                       {"seqlen", config.calibration.seqlen},
                       {"seed", config.calibration.seed}}},
                     {"mode", std::string(ExecutionModeName(config.mode))}};
  // Only a forced forward dtype is recorded, so measurements kept before the
  // option existed (auto) still match.
  if (config.forward_dtype != ForwardDtype::kAuto) {
    fingerprint["forward_dtype"] = std::string(ForwardDtypeName(config.forward_dtype));
  }
  return fingerprint;
}

std::string MeasurementBlockPath(const std::string& dir, int64_t block) {
  return absl::StrFormat("%s/block-%05d.safetensors", dir, block);
}

absl::StatusOr<int64_t> FindReusableMeasurement(const std::string& dir, const JobConfig& config) {
  const std::string path = absl::StrCat(dir, "/", kManifestName);
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("no complete measurement in ", dir));
  }
  std::stringstream text;
  text << in.rdbuf();
  json manifest;
  try {
    manifest = json::parse(text.str());
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat("measurement manifest ", path, ": ", e.what()));
  }
  if (!manifest.is_object() || manifest.value("version", 0) != kManifestVersion ||
      !manifest.contains("fingerprint") || !manifest.contains("num_blocks")) {
    return absl::DataLossError(
        absl::StrCat("measurement manifest ", path, ": not a version ", kManifestVersion,
                     " manifest (fields version, fingerprint, num_blocks)"));
  }
  absl::StatusOr<json> want = MeasurementFingerprint(config);
  if (!want.ok()) return want.status();
  const std::string diff = FirstDifference(manifest.at("fingerprint"), *want, "");
  if (!diff.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the measurement in ", dir, " is of another model or calibration set (", diff,
        " differs); name a new measurement or remove this one"));
  }
  return manifest.at("num_blocks").get<int64_t>();
}

absl::Status CompleteMeasurement(const std::string& dir, const JobConfig& config,
                                 int64_t num_blocks) {
  for (int64_t b = 0; b < num_blocks; ++b) {
    const std::string block = MeasurementBlockPath(dir, b);
    std::error_code ec;
    if (!fs::is_regular_file(block, ec)) {
      return absl::NotFoundError(absl::StrCat("measurement ", dir, ": block file ", block,
                                              " is missing"));
    }
  }
  absl::StatusOr<json> fingerprint = MeasurementFingerprint(config);
  if (!fingerprint.ok()) return fingerprint.status();
  const std::string text =
      json{{"version", kManifestVersion}, {"fingerprint", *fingerprint}, {"num_blocks", num_blocks}}
          .dump(2) +
      "\n";
  return WriteFileDurably(absl::StrCat(dir, "/", kManifestName), {text});
}

}  // namespace baq
