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
    if (fields.size() != 2 && fields.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": expected `TOKEN TENANT [ROLE]`, got ", fields.size(), " field(s)"));
    }
    Identity identity;
    identity.tenant = std::string(fields[1]);
    if (fields.size() == 3) {
      if (fields[2] != "admin" && fields[2] != "tenant") {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": role '", fields[2], "' is neither `tenant` nor `admin`"));
      }
      identity.admin = fields[2] == "admin";
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
    table.entries_.emplace_back(std::string(fields[0]), std::move(identity));
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

absl::StatusOr<TokenTable::Identity> TokenTable::IdentityOf(absl::string_view token) const {
  const Identity* found = nullptr;
  for (const auto& [known, identity] : entries_) {  // No early exit: see the header.
    if (ConstantTimeEquals(known, token)) found = &identity;
  }
  if (found == nullptr) return absl::NotFoundError("unknown token");
  return *found;
}

absl::StatusOr<std::string> TokenTable::TenantOf(absl::string_view token) const {
  absl::StatusOr<Identity> identity = IdentityOf(token);
  if (!identity.ok()) return identity.status();
  return identity->tenant;
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
  if (tokens == nullptr) {
    caller.admin = true;  // No auth: no tenants to keep apart.
    return caller;
  }
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return Reject(metrics, "missing", "missing `authorization: Bearer <token>` metadata");
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ") || value.empty()) {
    return Reject(metrics, "malformed", "authorization metadata is not `Bearer <token>`");
  }
  absl::StatusOr<TokenTable::Identity> identity = tokens->IdentityOf(value);
  if (!identity.ok()) return Reject(metrics, "unknown_token", "unknown bearer token");
  caller.tenant = std::move(identity->tenant);
  caller.admin = identity->admin;
  return caller;
}

}  // namespace baq::coordinator
