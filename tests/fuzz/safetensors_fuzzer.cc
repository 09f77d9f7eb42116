// tests/fuzz/safetensors_fuzzer.cc
//
// libFuzzer target for SafetensorsFile::FromBytes (see docs/fuzzing.md).
// Beyond "no crash, no ASan/UBSan report", it checks the reader's contract:
//   - a rejected image is InvalidArgument whose message names the source and
//     is valid UTF-8 (statuses travel over gRPC, whose strings must be UTF-8);
//   - an accepted image yields views that are in bounds (every byte is read,
//     so ASan sees any overrun), match prod(shape) * dtype size, and tile the
//     data section in offset order without gaps or overlaps.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "common/safetensors.h"
#include "nlohmann/json.hpp"

namespace {

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "contract violated: %s: %s\n", what, detail.c_str());
  __builtin_trap();
}

bool IsValidUtf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();  // strict UTF-8 check, throws otherwise
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = baq::SafetensorsFile::FromBytes(
      std::string(reinterpret_cast<const char*>(data), size), "fuzz.safetensors");
  if (!file.ok()) {
    const std::string message(file.status().message());
    if (file.status().code() != absl::StatusCode::kInvalidArgument) Fail("code", message);
    if (message.rfind("fuzz.safetensors: ", 0) != 0) Fail("source not named", message);
    if (!IsValidUtf8(message)) Fail("message not UTF-8", message);
    return 0;
  }
  uint64_t checksum = 0;
  uint64_t expected_begin = 0;
  for (const baq::TensorInfo& info : (*file)->tensors()) {
    absl::StatusOr<baq::TensorView> view = (*file)->Get(info.name);
    if (!view.ok()) Fail("listed tensor not gettable", info.name);
    const uint64_t nbytes =
        static_cast<uint64_t>(view->NumElements()) * baq::DTypeSize(view->dtype);
    if (view->bytes.size() != nbytes) Fail("byte size", info.name);
    if (info.data_begin != expected_begin) Fail("not tiled", info.name);
    expected_begin = info.data_end;
    for (uint8_t b : view->bytes) checksum += b;
    if (!(*file)->Info(info.name).ok()) Fail("Info", info.name);
  }
  if (expected_begin + 8 > size) Fail("data past end of input", std::to_string(expected_begin));
  for (const auto& [key, value] : (*file)->metadata()) checksum += key.size() + value.size();
  if ((*file)->Get("\xff not a tensor").ok()) Fail("Get of absent name", "");
  volatile uint64_t sink = checksum;  // keep the reads
  (void)sink;
  return 0;
}
