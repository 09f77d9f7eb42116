// coordinator/data_dir_collector.h
//
// DataDirCollector: the coordinator's --data_dir as seen at scrape time.
//
//   baq_coordinator_data_dir_free_bytes               bytes an unprivileged writer may
//                                                     still use (statvfs f_bavail)
//   baq_coordinator_data_dir_capacity_bytes           size of the file system
//   baq_coordinator_job_checkpoint_bytes{job_id}      bytes under <data_dir>/jobs/<id>/
//
// A job's checkpoint directory exists while it runs (and while an
// interrupted job waits for a restart); JobManager removes it when the job
// ends, so the per-job series disappear with it (bounded cardinality). The
// scan reads directory entries only (a checkpoint holds a few files per
// block), every scrape.
//
// Thread-safe: Collect() keeps no state.
//
// Example:
//   endpoint->Add(std::make_shared<DataDirCollector>("/var/lib/baq"));
#ifndef BAQ_COORDINATOR_DATA_DIR_COLLECTOR_H_
#define BAQ_COORDINATOR_DATA_DIR_COLLECTOR_H_

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <string>
#include <vector>

namespace baq::coordinator {

class DataDirCollector : public prometheus::Collectable {
 public:
  explicit DataDirCollector(std::string data_dir) : data_dir_(std::move(data_dir)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::string data_dir_;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_DATA_DIR_COLLECTOR_H_
