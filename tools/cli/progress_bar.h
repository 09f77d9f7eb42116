// tools/cli/progress_bar.h
//
// Renders coordinator::JobProgress events as a one-line progress bar with
// ETA on a terminal (carriage-return updates), or as one plain line per
// event when the stream is not a TTY (CI logs, `baq watch --progress 2>log`).
// The commands draw it on stderr only (stdout carries the results); a
// disabled bar (no terminal and no --progress, or --progress=false) prints
// nothing.
// Thread-compatible: call Update() from one thread at a time.
#ifndef BAQ_TOOLS_CLI_PROGRESS_BAR_H_
#define BAQ_TOOLS_CLI_PROGRESS_BAR_H_

#include <cstdio>
#include <string>

#include "coordinator/job_runner.h"

namespace baq::cli {

// Formats one progress event, e.g.
// "[#########-----------]  45.0% quantizing block 5/12  3.02 bits  eta 1m20s"
std::string FormatProgressLine(const coordinator::JobProgress& p, int bar_width = 24);

class ProgressBar {
 public:
  // `out` is not owned. `enabled` false: Update() and Finish() print nothing.
  explicit ProgressBar(std::FILE* out, bool enabled = true);
  void Update(const coordinator::JobProgress& p);
  // Ends the line on a terminal.
  void Finish();

 private:
  std::FILE* const out_;
  const bool enabled_;
  const bool tty_;
  std::string last_;
};

}  // namespace baq::cli

#endif  // BAQ_TOOLS_CLI_PROGRESS_BAR_H_
