#include "coordinator/job_auth.h"

#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace baq::coordinator {
namespace {

bool ValidTenant(absl::string_view tenant) {
  if (tenant.empty()) return false;
  for (char c : tenant) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

// Equal strings, in time that depends only on the lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]);
  }
  return diff == 0;
}

absl::Status Reject(CoordinatorMetrics* metrics, const char* reason, absl::string_view message) {
  if (metrics != nullptr) metrics->auth_failures_total(reason).Increment();
  return absl::UnauthenticatedError(message);
}

}  // namespace

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text, absl::string_view source) {
  TokenTable table;
  absl::flat_hash_set<std::string> seen;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    const std::string where = absl::StrCat(source, ":", line_number);
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": expected `TOKEN TENANT`, got ", fields.size(), " field(s)"));
    }
    if (fields[0].size() < kMinTokenLength) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": token shorter than ",
                                                     kMinTokenLength, " characters"));
    }
    if (!ValidTenant(fields[1])) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": tenant '", fields[1], "' is not [A-Za-z0-9._-]+"));
    }
    if (!seen.insert(std::string(fields[0])).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate token"));
    }
    table.entries_.emplace_back(std::string(fields[0]), std::string(fields[1]));
  }
  if (table.entries_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": no tokens"));
  }
  return table;
}

absl::StatusOr<TokenTable> TokenTable::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read auth token file ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

absl::StatusOr<std::string> TokenTable::TenantOf(absl::string_view token) const {
  const std::string* tenant = nullptr;
  for (const auto& [known, name] : entries_) {  // No early exit: see the header.
    if (ConstantTimeEquals(known, token)) tenant = &name;
  }
  if (tenant == nullptr) return absl::NotFoundError("unknown token");
  return *tenant;
}

absl::StatusOr<Caller> Authenticate(const grpc::ServerContextBase& ctx, const TokenTable* tokens,
                                    CoordinatorMetrics* metrics) {
  Caller caller;
  caller.peer = ctx.peer();
  if (std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
      auth != nullptr && auth->IsPeerAuthenticated()) {
    std::vector<grpc::string_ref> cn = auth->FindPropertyValues("x509_common_name");
    if (!cn.empty()) caller.cert_cn.assign(cn.front().data(), cn.front().size());
  }
  if (tokens == nullptr) return caller;
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return Reject(metrics, "missing", "missing `authorization: Bearer <token>` metadata");
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ") || value.empty()) {
    return Reject(metrics, "malformed", "authorization metadata is not `Bearer <token>`");
  }
  absl::StatusOr<std::string> tenant = tokens->TenantOf(value);
  if (!tenant.ok()) return Reject(metrics, "unknown_token", "unknown bearer token");
  caller.tenant = *std::move(tenant);
  return caller;
}

}  // namespace baq::coordinator
