#include "coordinator/retention.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"

namespace baq::coordinator {
namespace fs = std::filesystem;

namespace {

struct Entry {
  std::string path;
  int64_t bytes = 0;
  absl::Time age_from;  // End time of the job, or newest file time.
  bool removable = false;
  // No record names it: removed by age only, never to meet the size limit,
  // as it may belong to a job submitted after the records were listed.
  bool orphan = false;
};

absl::Time ModifiedTime(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return absl::InfinitePast();
  return absl::TimeFromTimespec(st.st_mtim);
}

// Size and newest modification time of everything under `dir`.
absl::Status Measure(const std::string& dir, Entry& e) {
  std::error_code ec;
  e.age_from = ModifiedTime(dir);
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string p = it->path().string();
    e.age_from = std::max(e.age_from, ModifiedTime(p));
    if (it->is_regular_file(ec)) e.bytes += static_cast<int64_t>(it->file_size(ec));
  }
  if (ec) return absl::InternalError(absl::StrCat("retention: cannot scan ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

Retention::Retention(std::string data_dir, RetentionOptions options)
    : data_dir_(std::move(data_dir)), options_(std::move(options)) {}

absl::StatusOr<RetentionReport> Retention::Collect(const std::vector<JobRecord>& jobs) const {
  RetentionReport report;
  if (data_dir_.empty()) return report;
  std::map<std::string, const JobRecord*> by_id;
  for (const JobRecord& r : jobs) by_id[r.id] = &r;

  std::vector<Entry> entries;
  std::error_code ec;
  const std::string jobs_dir = data_dir_ + "/jobs";
  if (fs::is_directory(jobs_dir, ec)) {
    for (const fs::directory_entry& d : fs::directory_iterator(jobs_dir, ec)) {
      if (!d.is_directory()) continue;  // Records (<id>.json) are kept.
      Entry e;
      e.path = d.path().string();
      if (absl::Status s = Measure(e.path, e); !s.ok()) return s;
      auto it = by_id.find(d.path().filename().string());
      if (it == by_id.end()) {
        e.removable = true;  // Aged by its files.
        e.orphan = true;
      } else if (IsTerminal(it->second->state)) {
        e.removable = true;
        e.age_from = it->second->end_time;
      }
      entries.push_back(std::move(e));
    }
    if (ec) return absl::InternalError(absl::StrCat("retention: cannot list ", jobs_dir, ": ", ec.message()));
  }
  const std::string measurements_dir = absl::StrCat(data_dir_, "/", kMeasurementsDir);
  if (fs::is_directory(measurements_dir, ec)) {
    for (const fs::directory_entry& d : fs::directory_iterator(measurements_dir, ec)) {
      Entry e;
      e.path = d.path().string();
      if (d.is_directory()) {
        if (absl::Status s = Measure(e.path, e); !s.ok()) return s;
      } else {
        e.bytes = static_cast<int64_t>(d.file_size(ec));
        e.age_from = ModifiedTime(e.path);
      }
      e.removable = true;
      entries.push_back(std::move(e));
    }
    if (ec) {
      return absl::InternalError(
          absl::StrCat("retention: cannot list ", measurements_dir, ": ", ec.message()));
    }
  }

  // Oldest first; ties by path, for a deterministic order.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.age_from != b.age_from ? a.age_from < b.age_from : a.path < b.path;
  });
  int64_t total = 0;
  for (const Entry& e : entries) total += e.bytes;
  const absl::Time now = options_.now();
  auto remove = [&](const Entry& e) -> absl::Status {
    std::error_code rm_ec;
    fs::remove_all(e.path, rm_ec);
    if (rm_ec) {
      return absl::InternalError(
          absl::StrCat("retention: cannot remove ", e.path, ": ", rm_ec.message()));
    }
    report.removed.push_back(e.path);
    report.bytes_freed += e.bytes;
    total -= e.bytes;
    return absl::OkStatus();
  };
  std::vector<bool> gone(entries.size(), false);
  if (options_.max_age != absl::InfiniteDuration()) {
    for (size_t i = 0; i < entries.size(); ++i) {
      if (!entries[i].removable || now - entries[i].age_from <= options_.max_age) continue;
      if (absl::Status s = remove(entries[i]); !s.ok()) return s;
      gone[i] = true;
    }
  }
  if (options_.max_bytes > 0) {
    for (size_t i = 0; i < entries.size() && total > options_.max_bytes; ++i) {
      if (gone[i] || !entries[i].removable || entries[i].orphan) continue;
      if (absl::Status s = remove(entries[i]); !s.ok()) return s;
      gone[i] = true;
    }
  }
  report.bytes_kept = total;
  return report;
}

}  // namespace baq::coordinator
