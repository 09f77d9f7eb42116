// coordinator/job_store.h
//
// JobStore persists JobRecords as one JSON file per job under
// `<data_dir>/jobs/<id>.json`, so a restarted coordinator lists the jobs of
// earlier runs. Each save writes a temporary file and renames it over the
// old one (atomic on POSIX), so a crash leaves either the old or the new
// record, never half of one. An empty data_dir disables persistence.
//
// The format is plain JSON of the record (config by field name, enums by
// their CLI names, times as Unix milliseconds); fields are only added.
//
// Thread-safe for different jobs; the JobManager serializes saves of one job
// (coordinator/job_record_writer.h). The methods are virtual so that tests
// can wrap the store (a slow or failing disk), as LevelDB's EnvWrapper does.
//
// Example:
//   JobStore store("/var/lib/baq");
//   BAQ_RETURN_IF_ERROR(store.Init());
//   BAQ_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store.LoadAll());
#ifndef BAQ_COORDINATOR_JOB_STORE_H_
#define BAQ_COORDINATOR_JOB_STORE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/job_record.h"
#include "nlohmann/json.hpp"

namespace baq::coordinator {

class JobStore {
 public:
  explicit JobStore(std::string data_dir) : data_dir_(std::move(data_dir)) {}
  virtual ~JobStore() = default;

  // Creates `<data_dir>/jobs`. Internal if it cannot.
  virtual absl::Status Init() const;
  // Replaces the job's record (write a temporary file, rename it over).
  virtual absl::Status Save(const JobRecord& record) const;
  // Every stored record, oldest first. A file that does not parse is
  // skipped with a log line rather than failing the coordinator's start.
  virtual absl::StatusOr<std::vector<JobRecord>> LoadAll() const;
  // Removes the job's record file (DeleteJob); returns its path, or "" when
  // there was none (or persistence is off). Internal if it cannot.
  virtual absl::StatusOr<std::string> Remove(const std::string& id) const;

  bool enabled() const { return !data_dir_.empty(); }

 private:
  std::string JobsDir() const { return data_dir_ + "/jobs"; }

  const std::string data_dir_;
};

nlohmann::json JobConfigToJson(const JobConfig& config);
absl::StatusOr<JobConfig> JobConfigFromJson(const nlohmann::json& json);
nlohmann::json JobRecordToJson(const JobRecord& record);
absl::StatusOr<JobRecord> JobRecordFromJson(const nlohmann::json& json);

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_STORE_H_
