#include "coordinator/job_checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/base/casts.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"
#include "common/durable_file.h"
#include "common/status_macros.h"
#include "common/trace_recorder.h"

namespace baq::coordinator {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr char kBlockMagic[] = "BAQBLK1\n";  // 8 bytes.
constexpr int kManifestVersion = 1;

// Doubles travel as their bit patterns: a resumed job must continue with
// exactly the values an uninterrupted one would have.
uint64_t Bits(double x) { return absl::bit_cast<uint64_t>(x); }
double FromBits(const json& j) { return absl::bit_cast<double>(j.get<uint64_t>()); }

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::DataLossError(absl::StrCat("checkpoint: cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

json LayerToJson(const LayerReport& l) {
  return {{"name", l.name},
          {"rows", l.rows},
          {"columns", l.columns},
          {"bits_sum", Bits(l.bits_sum)},
          {"proxy_loss", Bits(l.proxy_loss)},
          {"seconds", Bits(l.seconds)},
          {"gptq_bits", l.gptq_bits},
          {"gptq_proxy_loss", Bits(l.gptq_proxy_loss)}};
}

LayerReport LayerFromJson(const json& j) {
  LayerReport l;
  l.name = j.at("name").get<std::string>();
  l.rows = j.at("rows").get<int64_t>();
  l.columns = j.at("columns").get<int64_t>();
  l.bits_sum = FromBits(j.at("bits_sum"));
  l.proxy_loss = FromBits(j.at("proxy_loss"));
  l.seconds = FromBits(j.at("seconds"));
  l.gptq_bits = j.at("gptq_bits").get<int32_t>();
  l.gptq_proxy_loss = FromBits(j.at("gptq_proxy_loss"));
  return l;
}

// A block file: kBlockMagic, the u64 length of a JSON header (block,
// tensors' names, dtypes, shapes, sizes and formats, layer reports), then the
// tensors' bytes back to back. Written from the caller's tensors, no copy.
absl::Status WriteTensorsFile(const std::string& path, int64_t block,
                              const std::vector<TensorBytes>& tensors,
                              const std::vector<int32_t>& formats,
                              const std::vector<LayerReport>& layers) {
  json tensor_json = json::array();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorBytes& t = tensors[i];
    tensor_json.push_back({{"name", t.name},
                           {"dtype", std::string(DTypeName(t.dtype))},
                           {"shape", t.shape},
                           {"bytes", t.bytes.size()},
                           {"format", i < formats.size() ? formats[i] : 0}});
  }
  json layer_json = json::array();
  for (const LayerReport& l : layers) layer_json.push_back(LayerToJson(l));
  const std::string header =
      json{{"block", block}, {"tensors", tensor_json}, {"layers", layer_json}}.dump();
  const uint64_t header_bytes = header.size();
  std::vector<absl::string_view> pieces = {
      absl::string_view(kBlockMagic, sizeof(kBlockMagic) - 1),
      absl::string_view(reinterpret_cast<const char*>(&header_bytes), 8), header};
  for (const TensorBytes& t : tensors) pieces.push_back(t.bytes);
  return WriteFileDurably(path, pieces);
}

}  // namespace

JobCheckpoint::JobCheckpoint(std::string dir, nlohmann::json config)
    : dir_(std::move(dir)), config_(std::move(config)) {}

std::string JobCheckpoint::BlockPath(int64_t block) const {
  return absl::StrFormat("%s/block-%05d.out", dir_, block);
}

std::string JobCheckpoint::WeightsPath(int64_t block) const {
  return absl::StrCat(dir_, "/weights-", block, ".bin");
}

std::string JobCheckpoint::InputsPath(int64_t block) const {
  return absl::StrFormat("%s/inputs-%05d.bin", dir_, block);
}

int32_t JobCheckpoint::CheckpointedShards(const std::string& dir) {
  if (dir.empty()) return 0;
  absl::StatusOr<std::string> text = ReadAll(dir + "/manifest.json");
  if (!text.ok()) return 0;
  const json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.contains("config") || !j["config"].is_object()) return 0;
  // JobConfigToJson leaves out the default, 1.
  const json& c = j["config"];
  return c.contains("calibration_shards") && c["calibration_shards"].is_number_integer()
             ? c["calibration_shards"].get<int32_t>()
             : 1;
}

absl::StatusOr<CheckpointState> JobCheckpoint::Load() const {
  const std::string path = dir_ + "/manifest.json";
  if (!fs::exists(path)) return absl::NotFoundError(absl::StrCat("no checkpoint in ", dir_));
  absl::StatusOr<std::string> text = ReadAll(path);
  if (!text.ok()) return text.status();
  const json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::DataLossError(absl::StrCat(path, " is not JSON"));
  try {
    if (j.at("version").get<int>() != kManifestVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": manifest version ", j.at("version").dump(), " is not ",
                       kManifestVersion));
    }
    if (j.at("config") != config_) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " was written for another job config"));
    }
    CheckpointState s;
    s.num_blocks = j.at("num_blocks").get<int64_t>();
    s.blocks_done = j.at("blocks_done").get<int64_t>();
    const json& b = j.at("budget");
    s.budget.bits_done = FromBits(b.at("bits_done"));
    s.budget.elements_done = b.at("elements_done").get<int64_t>();
    s.budget.projection_exact = FromBits(b.at("projection_exact"));
    s.budget.projection_assigned = FromBits(b.at("projection_assigned"));
    for (const json& r : b.value("reference_losses", json::array())) {
      s.budget.reference_losses.emplace_back(r.at(0).get<std::string>(), FromBits(r.at(1)));
    }
    s.worker_failures = j.at("worker_failures").get<int64_t>();
    s.resumes = j.value("resumes", int64_t{0});
    s.shard_checkpoint_block = j.value("shard_checkpoint_block", int64_t{-1});
    s.shard_checkpoint_previous = j.value("shard_checkpoint_previous", int64_t{-1});
    if (s.blocks_done < 0 || s.blocks_done > s.num_blocks) {
      return absl::DataLossError(absl::StrCat(path, ": blocks_done ", s.blocks_done,
                                              " is outside [0, ", s.num_blocks, "]"));
    }
    return s;
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": ", e.what()));
  }
}

absl::StatusOr<BlockOutput> JobCheckpoint::LoadBlock(int64_t block) const {
  return ReadBlockFile(BlockPath(block), block);
}

absl::StatusOr<std::vector<TensorBytes>> JobCheckpoint::LoadWeights(int64_t block) const {
  BAQ_ASSIGN_OR_RETURN(BlockOutput out, ReadBlockFile(WeightsPath(block), block));
  return std::move(out.tensors);
}

absl::Status JobCheckpoint::SaveWeights(int64_t block, const std::vector<TensorBytes>& weights) {
  BAQ_TRACE_SCOPE("checkpoint", "save_weights", {{"block", block}});
  BAQ_RETURN_IF_ERROR(CreateDir());
  return WriteTensorsFile(WeightsPath(block), block, weights, {}, {});
}

void JobCheckpoint::DropWeightsBefore(int64_t block) {
  std::error_code ec;
  for (int64_t b = block - 1; b >= 0; --b) {
    if (!fs::remove(WeightsPath(b), ec)) break;  // Older ones went before.
  }
}

absl::StatusOr<BlockOutput> JobCheckpoint::ReadBlockFile(const std::string& path,
                                                         int64_t block) const {
  // Read piece by piece into the tensors: a block file (outputs or weights
  // of a whole block) is never held twice.
  std::ifstream in(path, std::ios::binary);
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (!in || ec) return absl::DataLossError(absl::StrCat("checkpoint: cannot read ", path));
  const size_t magic = sizeof(kBlockMagic) - 1;
  std::string head(magic, '\0');
  uint64_t header_bytes = 0;
  if (size < magic + 8 || !in.read(head.data(), magic) || head != kBlockMagic ||
      !in.read(reinterpret_cast<char*>(&header_bytes), 8)) {
    return absl::DataLossError(absl::StrCat(path, ": not a block checkpoint"));
  }
  uint64_t left = size - magic - 8;
  if (header_bytes > left) return absl::DataLossError(absl::StrCat(path, ": truncated header"));
  std::string header_text(header_bytes, '\0');
  if (!in.read(header_text.data(), static_cast<std::streamsize>(header_bytes))) {
    return absl::DataLossError(absl::StrCat(path, ": truncated header"));
  }
  left -= header_bytes;
  const json h = json::parse(header_text, nullptr, false);
  if (h.is_discarded()) return absl::DataLossError(absl::StrCat(path, ": header is not JSON"));
  try {
    BlockOutput out;
    out.block = h.at("block").get<int64_t>();
    if (out.block != block) {
      return absl::DataLossError(absl::StrCat(path, " holds block ", out.block));
    }
    for (const json& t : h.at("tensors")) {
      TensorBytes tensor;
      tensor.name = t.at("name").get<std::string>();
      absl::StatusOr<DType> dtype = ParseDType(t.at("dtype").get<std::string>());
      if (!dtype.ok()) return absl::DataLossError(absl::StrCat(path, ": ", dtype.status().message()));
      tensor.dtype = *dtype;
      tensor.shape = t.at("shape").get<std::vector<int64_t>>();
      const uint64_t n = t.at("bytes").get<uint64_t>();
      if (n > left) {
        return absl::DataLossError(absl::StrCat(path, ": tensor ", tensor.name, " truncated"));
      }
      tensor.bytes.resize(n);
      if (!in.read(tensor.bytes.data(), static_cast<std::streamsize>(n))) {
        return absl::DataLossError(absl::StrCat(path, ": tensor ", tensor.name, " truncated"));
      }
      left -= n;
      out.tensors.push_back(std::move(tensor));
      out.tensor_format.push_back(t.at("format").get<int32_t>());
    }
    if (left != 0) {
      return absl::DataLossError(absl::StrCat(path, ": ", left, " trailing bytes"));
    }
    for (const json& l : h.at("layers")) out.layers.push_back(LayerFromJson(l));
    return out;
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": ", e.what()));
  }
}

absl::StatusOr<std::string> JobCheckpoint::LoadInputs(int64_t block) const {
  return ReadAll(InputsPath(block));
}

absl::Status JobCheckpoint::WriteManifest(const CheckpointState& s) {
  json references = json::array();
  for (const auto& [scope, loss] : s.budget.reference_losses) {
    references.push_back({scope, Bits(loss)});
  }
  const json j = {{"version", kManifestVersion},
                  {"num_blocks", s.num_blocks},
                  {"blocks_done", s.blocks_done},
                  {"budget",
                   {{"bits_done", Bits(s.budget.bits_done)},
                    {"elements_done", s.budget.elements_done},
                    {"projection_exact", Bits(s.budget.projection_exact)},
                    {"projection_assigned", Bits(s.budget.projection_assigned)},
                    {"reference_losses", references}}},
                  {"worker_failures", s.worker_failures},
                  {"resumes", s.resumes},
                  {"shard_checkpoint_block", s.shard_checkpoint_block},
                  {"shard_checkpoint_previous", s.shard_checkpoint_previous},
                  {"config", config_}};
  const std::string text = j.dump(1) + "\n";
  return WriteFileDurably(dir_ + "/manifest.json", {text});
}

absl::Status JobCheckpoint::CreateDir() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return absl::InternalError(absl::StrCat("checkpoint: cannot create ", dir_, ": ",
                                                  ec.message()));
  return absl::OkStatus();
}

absl::Status JobCheckpoint::SaveBlock(const BlockOutput& output, const std::string* next_inputs,
                                      const CheckpointState& state) {
  BAQ_TRACE_SCOPE(
      "checkpoint", "save_block",
      {{"block", output.block}, {"inputs_bytes", next_inputs ? next_inputs->size() : 0}});
  BAQ_RETURN_IF_ERROR(CreateDir());
  if (absl::Status s = WriteTensorsFile(BlockPath(output.block), output.block, output.tensors,
                                        output.tensor_format, output.layers);
      !s.ok()) {
    return s;
  }
  if (next_inputs != nullptr) {
    if (absl::Status s = WriteFileDurably(InputsPath(output.block + 1), {*next_inputs}); !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = WriteManifest(state); !s.ok()) return s;
  // The manifest now points past block b: its inputs are no longer needed.
  std::error_code ec;
  fs::remove(InputsPath(output.block), ec);
  return absl::OkStatus();
}

absl::Status JobCheckpoint::SaveState(const CheckpointState& state) {
  BAQ_TRACE_SCOPE("checkpoint", "save_state", {{"blocks_done", state.blocks_done}});
  BAQ_RETURN_IF_ERROR(CreateDir());
  return WriteManifest(state);
}

void JobCheckpoint::Remove() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

}  // namespace baq::coordinator
