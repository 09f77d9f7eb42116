// coordinator/audit_log.h
//
// AuditLog: one JSON line per JobService action — who (tenant, peer, client
// certificate CN), what (submit, cancel, get, list, watch), which job, the
// result (canonical code and message) and when (UTC, RFC 3339 with
// microseconds) — appended to a file and fsync'ed before the RPC answers,
// so an acknowledged action is on disk (--audit_log). Example line:
//
//   {"time":"2026-11-25T22:41:07.123456Z","action":"submit","tenant":"research",
//    "peer":"ipv4:10.0.0.3:51234","cert_cn":"","job_id":"job-20261125-224107-000",
//    "request_id":"cli-3f...","result":"OK","error":""}
//
// A write failure does not fail the RPC (the action already happened); it
// is reported once on stderr and counted in write_errors().
//
// Thread-safe: lines from concurrent RPCs never interleave.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(std::unique_ptr<AuditLog> audit, AuditLog::Open("/var/log/baq/audit"));
//   audit->Record({absl::Now(), "cancel", caller, job_id, "", status});
#ifndef BAQ_COORDINATOR_AUDIT_LOG_H_
#define BAQ_COORDINATOR_AUDIT_LOG_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/job_auth.h"

namespace baq::coordinator {

struct AuditEvent {
  absl::Time time;
  std::string action;  // "submit", "cancel", "get", "list", "watch".
  Caller caller;
  std::string job_id;      // Empty for list, and for a rejected submit.
  std::string request_id;  // Submit's idempotency key.
  absl::Status result;
};

class AuditLog {
 public:
  // Opens (creating, mode 0600) `path` for appending. Unavailable naming the
  // path when it cannot be opened.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path);
  ~AuditLog();

  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one line and fsyncs it.
  void Record(const AuditEvent& event) ABSL_LOCKS_EXCLUDED(mu_);
  int64_t write_errors() const ABSL_LOCKS_EXCLUDED(mu_);

  // The line Record() writes, without the newline.
  static std::string Format(const AuditEvent& event);

 private:
  AuditLog(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  const std::string path_;
  const int fd_;

  mutable absl::Mutex mu_;
  int64_t write_errors_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_AUDIT_LOG_H_
