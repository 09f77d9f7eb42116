#include "coordinator/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace baq::coordinator {

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot open audit log ", path, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(path, fd));
}

AuditLog::~AuditLog() { close(fd_); }

std::string AuditLog::Format(const AuditEvent& e) {
  nlohmann::ordered_json line;
  line["time"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", e.time, absl::UTCTimeZone());
  line["action"] = e.action;
  line["tenant"] = e.caller.tenant;
  line["peer"] = e.caller.peer;
  line["cert_cn"] = e.caller.cert_cn;
  line["job_id"] = e.job_id;
  line["request_id"] = e.request_id;
  line["result"] = absl::StatusCodeToString(e.result.code());
  line["error"] = std::string(e.result.message());
  // Replace invalid UTF-8 from clients instead of throwing.
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void AuditLog::Record(const AuditEvent& event) {
  const std::string line = Format(event) + "\n";
  absl::MutexLock lock(&mu_);
  // O_APPEND: one write() per line lands whole at the end of the file.
  const ssize_t n = write(fd_, line.data(), line.size());
  const bool ok = n == static_cast<ssize_t>(line.size()) && fsync(fd_) == 0;
  if (!ok) {
    if (write_errors_++ == 0) {
      std::cerr << "baq-coordinator: ERROR: cannot append to audit log " << path_ << ": "
                << std::strerror(errno) << "\n";
    }
  }
}

int64_t AuditLog::write_errors() const {
  absl::MutexLock lock(&mu_);
  return write_errors_;
}

}  // namespace baq::coordinator
