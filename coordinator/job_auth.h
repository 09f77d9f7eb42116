// coordinator/job_auth.h
//
// Who is calling the JobService. TokenTable holds the bearer tokens the
// coordinator accepts (--auth_token_file) and the tenant each one stands
// for; Authenticate() checks a call's `authorization: Bearer <token>`
// metadata against it and describes the caller (tenant, peer address, and
// the client certificate's common name under mutual TLS) for the audit log
// and for Submit, which records the tenant with the job.
//
// Token file format: one `TOKEN TENANT [ROLE]` line per token, separated by
// blanks; `#` starts a comment; blank lines are ignored. Tokens are opaque
// strings of visible ASCII (at least 16 characters); a tenant is a name
// ([A-Za-z0-9._-]+). A token may appear once; a tenant may have several
// tokens (rotation). ROLE is `tenant` (the default: the caller sees, watches,
// cancels and deletes only its own tenant's jobs) or `admin` (every job).
// The file is read at startup.
//
//   # tenant "research" rotates its token: old and new are both valid
//   3f1c9a0e...  research
//   9b77d2c4...  research
//   c0ffee11...  platform
//   5eed0a77...  ops       admin
//
// Thread-safe after construction (immutable).
#ifndef BAQ_COORDINATOR_JOB_AUTH_H_
#define BAQ_COORDINATOR_JOB_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "coordinator/coordinator_metrics.h"

namespace baq::coordinator {

// Shortest token accepted: a guessable token is no token.
inline constexpr size_t kMinTokenLength = 16;

class TokenTable {
 public:
  // InvalidArgument naming `source` and the line for a malformed line, a
  // short token or a duplicate token; NotFound when the file is missing.
  static absl::StatusOr<TokenTable> Parse(absl::string_view text, absl::string_view source);
  static absl::StatusOr<TokenTable> Load(const std::string& path);

  struct Identity {
    std::string tenant;
    bool admin = false;
  };

  // The tenant of `token`; NotFound when unknown. Compares in time that
  // does not depend on where a guess first differs.
  absl::StatusOr<std::string> TenantOf(absl::string_view token) const;
  // The tenant and role of `token`; NotFound when unknown. Same timing.
  absl::StatusOr<Identity> IdentityOf(absl::string_view token) const;
  size_t size() const { return entries_.size(); }

 private:
  std::vector<std::pair<std::string, Identity>> entries_;  // (token, who)
};

// The caller of one JobService RPC.
struct Caller {
  std::string tenant;   // From the token; empty when auth is off.
  // Whether the caller may act on every tenant's jobs: an `admin` token, or
  // any caller when auth is off.
  bool admin = false;
  std::string peer;     // gRPC peer, e.g. "ipv4:10.0.0.3:51234".
  std::string cert_cn;  // Client certificate CN under mutual TLS; else empty.
};

// The caller of `ctx`. With `tokens` null (auth off) every caller is let
// in with an empty tenant, as an admin. Otherwise Unauthenticated when the metadata is
// missing ("missing"), not a Bearer token ("malformed") or an unknown token
// ("unknown_token"); each failure increments
// baq_coordinator_auth_failures_total{reason} when `metrics` is set.
absl::StatusOr<Caller> Authenticate(const grpc::ServerContextBase& ctx, const TokenTable* tokens,
                                    CoordinatorMetrics* metrics);

// Whether `caller` may see and act on a job of `job_tenant`: admins on
// every job, tenants on their own.
inline bool MayAccess(const Caller& caller, const std::string& job_tenant) {
  return caller.admin || caller.tenant == job_tenant;
}

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_AUTH_H_
