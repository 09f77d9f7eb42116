// common/version.h
//
// The release of this build and the version of the coordinator<->worker wire
// protocol. The protocol version is bumped whenever a change to
// proto/baq/v1/worker.proto (or to what its messages mean) makes an older
// worker compute something else or fail mid-job under a newer coordinator;
// fields that both sides may ignore do not bump it. Workers send both at
// registration and the coordinator refuses a protocol it does not speak
// (coordinator/registry_service.cc), so a rolling upgrade never mixes
// incompatible workers into one job.
//
// Thread-safe (constants).
#ifndef BAQ_COMMON_VERSION_H_
#define BAQ_COMMON_VERSION_H_

#include "absl/strings/string_view.h"

namespace baq {

// 1: the first protocol with a handshake (issue 21).
inline constexpr int kWorkerProtocolVersion = 1;

// The project's release, e.g. "0.1.0" (CMake's PROJECT_VERSION).
absl::string_view BaqVersion();

}  // namespace baq

#endif  // BAQ_COMMON_VERSION_H_
