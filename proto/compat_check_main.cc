// proto_compat_check RELEASED.binpb: exits 1 listing every change of the
// baq.v1 protos compiled into this binary that breaks peers built from the
// released descriptor set (proto/compat.h), 0 when there is none. Run by
// ctest (proto_compat_test) against proto/compat/baq_v1.binpb.
#include <fstream>
#include <iostream>

#include "baq/v1/job.pb.h"
#include "baq/v1/worker.pb.h"
#include "proto/compat.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: proto_compat_check RELEASED_DESCRIPTOR_SET.binpb\n";
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  google::protobuf::FileDescriptorSet released;
  if (!in || !released.ParseFromIstream(&in)) {
    std::cerr << "proto_compat_check: cannot read a FileDescriptorSet from " << argv[1] << "\n";
    return 2;
  }
  // Referencing the generated types links their descriptors into the pool.
  baq::v1::Job::descriptor();
  baq::v1::RegisterWorkerRequest::descriptor();
  auto breaks = baq::proto::FindBreakingChanges(
      released, *google::protobuf::DescriptorPool::generated_pool(), "baq.v1");
  if (!breaks.ok()) {
    std::cerr << "proto_compat_check: " << breaks.status() << "\n";
    return 2;
  }
  for (const std::string& line : *breaks) std::cerr << "BREAKING: " << line << "\n";
  if (!breaks->empty()) {
    std::cerr << breaks->size() << " breaking change(s) against " << argv[1]
              << ": fields and RPCs may only be added (docs/api.md, \"Package and versioning\")\n";
    return 1;
  }
  std::cout << "proto_compat_check: baq.v1 is wire-compatible with " << argv[1] << "\n";
  return 0;
}
