// proto/compat.h: the released protos are compatible with themselves and
// with additions, and every kind of breaking change is named.
#include "proto/compat.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "baq/v1/job.pb.h"
#include "baq/v1/worker.pb.h"

namespace baq::proto {
namespace {

using google::protobuf::DescriptorPool;
using google::protobuf::FileDescriptorProto;
using google::protobuf::FileDescriptorSet;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// The baq.v1 files compiled into this test, in dependency order.
FileDescriptorSet CurrentSet() {
  FileDescriptorSet set;
  for (const auto* file : {v1::QuantizationOptions::descriptor()->file(),
                           v1::Job::descriptor()->file(),
                           v1::RegisterWorkerRequest::descriptor()->file()}) {
    file->CopyTo(set.add_file());
  }
  return set;
}

FileDescriptorProto* FileNamed(FileDescriptorSet& set, const std::string& name) {
  for (auto& f : *set.mutable_file()) {
    if (f.name() == name) return &f;
  }
  return nullptr;
}

google::protobuf::DescriptorProto* MessageNamed(FileDescriptorProto& file,
                                                 const std::string& name) {
  for (auto& m : *file.mutable_message_type()) {
    if (m.name() == name) return &m;
  }
  return nullptr;
}

std::vector<std::string> Breaks(const FileDescriptorSet& released,
                                const FileDescriptorSet& changed) {
  DescriptorPool pool;
  for (const auto& file : changed.file()) EXPECT_NE(pool.BuildFile(file), nullptr) << file.name();
  auto breaks = FindBreakingChanges(released, pool, "baq.v1");
  EXPECT_TRUE(breaks.ok()) << breaks.status();
  return breaks.ok() ? *breaks : std::vector<std::string>{"error"};
}

TEST(ProtoCompatTest, TheCompiledProtosAreCompatibleWithThemselves) {
  auto breaks = FindBreakingChanges(CurrentSet(), *DescriptorPool::generated_pool(), "baq.v1");
  ASSERT_TRUE(breaks.ok()) << breaks.status();
  EXPECT_THAT(*breaks, IsEmpty());
}

TEST(ProtoCompatTest, AddingFieldsAndRpcsIsCompatible) {
  FileDescriptorSet released = CurrentSet();
  FileDescriptorSet changed = released;
  auto* job = MessageNamed(*FileNamed(changed, "baq/v1/job.proto"), "Job");
  auto* added = job->add_field();
  added->set_name("brand_new");
  added->set_number(999);
  added->set_type(google::protobuf::FieldDescriptorProto::TYPE_STRING);
  added->set_label(google::protobuf::FieldDescriptorProto::LABEL_OPTIONAL);
  EXPECT_THAT(Breaks(released, changed), IsEmpty());
}

TEST(ProtoCompatTest, NamesEveryBreakingChange) {
  FileDescriptorSet released = CurrentSet();
  FileDescriptorSet changed = released;
  FileDescriptorProto* file = FileNamed(changed, "baq/v1/job.proto");
  // Renumber Job.error (5 -> 50); retype GetJobRequest.id; drop CancelJobRequest.id.
  for (auto& f : *MessageNamed(*file, "Job")->mutable_field()) {
    if (f.name() == "error") f.set_number(50);
  }
  MessageNamed(*file, "GetJobRequest")
      ->mutable_field(0)
      ->set_type(google::protobuf::FieldDescriptorProto::TYPE_BYTES);
  MessageNamed(*file, "CancelJobRequest")->clear_field();
  // Drop the last JobState value and the Cancel RPC.
  for (auto& e : *file->mutable_enum_type()) {
    if (e.name() == "JobState") e.mutable_value()->RemoveLast();
  }
  auto* methods = file->mutable_service(0)->mutable_method();
  for (int i = 0; i < methods->size(); ++i) {
    if (methods->Get(i).name() == "Cancel") {
      methods->DeleteSubrange(i, 1);
      break;
    }
  }
  EXPECT_THAT(Breaks(released, changed),
              ElementsAre("baq.v1.Job.error: renumbered from 5 to 50",
                          "baq.v1.GetJobRequest.id: field 1 changed type from string to bytes",
                          "baq.v1.CancelJobRequest.id: field 1 removed",
                          "baq.v1.JobState.JOB_STATE_FAILED_GATE: value 6 removed",
                          "baq.v1.JobService.Cancel: RPC removed"));
}

}  // namespace
}  // namespace baq::proto
