// proto/compat.h
//
// The wire-compatibility rule of package baq.v1 ("fields are only ever
// added"), as a check: FindBreakingChanges compares the descriptors of a
// released version (a FileDescriptorSet, proto/compat/baq_v1.binpb,
// written by `protoc --descriptor_set_out --include_imports`) with the
// current ones and lists every change that breaks an old peer:
//   - a message, enum, service or RPC removed;
//   - a field number removed, or its name, type (message/enum type
//     included) or cardinality (repeated, map) changed; a field name moved
//     to another number (renumbered);
//   - an enum value number removed or renamed;
//   - an RPC's request or response type or streaming changed.
// Adding anything is fine. Only files of `package` are compared (imports of
// google/protobuf are not ours). No tool from the ecosystem does this here:
// buf is not packaged for Debian 12 and downloads a binary.
//
// Stateless; thread-safe.
//
// Example:
//   google::protobuf::FileDescriptorSet released;  // parsed from the .binpb
//   std::vector<std::string> breaks = FindBreakingChanges(
//       released, *google::protobuf::DescriptorPool::generated_pool(), "baq.v1");
#ifndef BAQ_PROTO_COMPAT_H_
#define BAQ_PROTO_COMPAT_H_

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace baq::proto {

// One line per breaking change, e.g. "baq.v1.Job.state: field 3 changed type
// from enum baq.v1.JobState to string"; empty: compatible. Internal when
// `released` does not build into a pool.
absl::StatusOr<std::vector<std::string>> FindBreakingChanges(
    const google::protobuf::FileDescriptorSet& released,
    const google::protobuf::DescriptorPool& current, const std::string& package);

}  // namespace baq::proto

#endif  // BAQ_PROTO_COMPAT_H_
