#include "proto/compat.h"

#include "absl/strings/str_cat.h"

namespace baq::proto {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptor;
using google::protobuf::ServiceDescriptor;

std::string TypeOf(const FieldDescriptor& f) {
  std::string type = f.type_name();
  if (f.message_type() != nullptr) type = absl::StrCat("message ", f.message_type()->full_name());
  if (f.enum_type() != nullptr) type = absl::StrCat("enum ", f.enum_type()->full_name());
  if (f.is_map()) return absl::StrCat("map ", type);
  if (f.is_repeated()) return absl::StrCat("repeated ", type);
  return type;
}

void CompareEnum(const EnumDescriptor& old_enum, const DescriptorPool& current,
                 std::vector<std::string>& out) {
  const EnumDescriptor* now = current.FindEnumTypeByName(old_enum.full_name());
  if (now == nullptr) {
    out.push_back(absl::StrCat(old_enum.full_name(), ": enum removed"));
    return;
  }
  for (int i = 0; i < old_enum.value_count(); ++i) {
    const auto* v = old_enum.value(i);
    const auto* n = now->FindValueByNumber(v->number());
    if (n == nullptr) {
      out.push_back(absl::StrCat(old_enum.full_name(), ".", v->name(), ": value ", v->number(),
                                 " removed"));
    } else if (n->name() != v->name()) {
      out.push_back(absl::StrCat(old_enum.full_name(), ".", v->name(), ": value ", v->number(),
                                 " renamed to ", n->name()));
    }
  }
}

void CompareMessage(const Descriptor& old_msg, const DescriptorPool& current,
                    std::vector<std::string>& out) {
  const Descriptor* now = current.FindMessageTypeByName(old_msg.full_name());
  if (now == nullptr) {
    out.push_back(absl::StrCat(old_msg.full_name(), ": message removed"));
    return;
  }
  for (int i = 0; i < old_msg.field_count(); ++i) {
    const FieldDescriptor& f = *old_msg.field(i);
    const std::string where = absl::StrCat(old_msg.full_name(), ".", f.name());
    const FieldDescriptor* n = now->FindFieldByNumber(f.number());
    if (n == nullptr) {
      const FieldDescriptor* moved = now->FindFieldByName(f.name());
      out.push_back(moved != nullptr
                        ? absl::StrCat(where, ": renumbered from ", f.number(), " to ",
                                       moved->number())
                        : absl::StrCat(where, ": field ", f.number(), " removed"));
      continue;
    }
    if (n->name() != f.name()) {
      out.push_back(absl::StrCat(where, ": field ", f.number(), " renamed to ", n->name(),
                                 " (breaks JSON and text formats)"));
    }
    if (TypeOf(*n) != TypeOf(f)) {
      out.push_back(absl::StrCat(where, ": field ", f.number(), " changed type from ", TypeOf(f),
                                 " to ", TypeOf(*n)));
    }
  }
  for (int i = 0; i < old_msg.nested_type_count(); ++i) {
    if (!old_msg.nested_type(i)->options().map_entry()) {
      CompareMessage(*old_msg.nested_type(i), current, out);
    }
  }
  for (int i = 0; i < old_msg.enum_type_count(); ++i) {
    CompareEnum(*old_msg.enum_type(i), current, out);
  }
}

void CompareService(const ServiceDescriptor& old_svc, const DescriptorPool& current,
                    std::vector<std::string>& out) {
  const ServiceDescriptor* now = current.FindServiceByName(old_svc.full_name());
  if (now == nullptr) {
    out.push_back(absl::StrCat(old_svc.full_name(), ": service removed"));
    return;
  }
  for (int i = 0; i < old_svc.method_count(); ++i) {
    const auto& m = *old_svc.method(i);
    const std::string where = absl::StrCat(old_svc.full_name(), ".", m.name());
    const auto* n = now->FindMethodByName(m.name());
    if (n == nullptr) {
      out.push_back(absl::StrCat(where, ": RPC removed"));
      continue;
    }
    if (n->input_type()->full_name() != m.input_type()->full_name() ||
        n->output_type()->full_name() != m.output_type()->full_name() ||
        n->client_streaming() != m.client_streaming() ||
        n->server_streaming() != m.server_streaming()) {
      auto sig = [](const google::protobuf::MethodDescriptor& d) {
        return absl::StrCat(d.client_streaming() ? "stream " : "", d.input_type()->full_name(),
                            " -> ", d.server_streaming() ? "stream " : "",
                            d.output_type()->full_name());
      };
      out.push_back(absl::StrCat(where, ": signature changed from ", sig(m), " to ", sig(*n)));
    }
  }
}

}  // namespace

absl::StatusOr<std::vector<std::string>> FindBreakingChanges(
    const google::protobuf::FileDescriptorSet& released, const DescriptorPool& current,
    const std::string& package) {
  DescriptorPool old_pool;
  for (const auto& file : released.file()) {
    if (old_pool.BuildFile(file) == nullptr) {
      return absl::InternalError(
          absl::StrCat("released descriptor set: cannot build ", file.name()));
    }
  }
  std::vector<std::string> out;
  for (const auto& proto : released.file()) {
    if (proto.package() != package) continue;
    const FileDescriptor* file = old_pool.FindFileByName(proto.name());
    for (int i = 0; i < file->message_type_count(); ++i) {
      CompareMessage(*file->message_type(i), current, out);
    }
    for (int i = 0; i < file->enum_type_count(); ++i) CompareEnum(*file->enum_type(i), current, out);
    for (int i = 0; i < file->service_count(); ++i) CompareService(*file->service(i), current, out);
  }
  return out;
}

}  // namespace baq::proto
