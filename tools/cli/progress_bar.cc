#include "tools/cli/progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace baq::cli {
namespace {

std::string HumanDuration(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return "?";
  const int64_t s = absl::ToInt64Seconds(d);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

}  // namespace

std::string FormatProgressLine(const coordinator::JobProgress& p, int bar_width) {
  const double frac = std::clamp(p.percent / 100.0, 0.0, 1.0);
  const int filled = static_cast<int>(std::lround(frac * bar_width));
  std::string bar = absl::StrCat("[", std::string(filled, '#'),
                                 std::string(bar_width - filled, '-'), "]");
  std::string what(coordinator::JobStageName(p.stage));
  if (p.block >= 0) absl::StrAppend(&what, " block ", p.block + 1, "/", p.num_blocks);
  std::string line = absl::StrFormat("%s %5.1f%% %-22s", bar, p.percent, what);
  if (p.blocks_done > 0) absl::StrAppendFormat(&line, " %.3f bits", p.achieved_bits);
  absl::StrAppend(&line, "  elapsed ", HumanDuration(p.elapsed), "  eta ",
                  p.stage == coordinator::JobStage::kDone ? "0s" : HumanDuration(p.eta));
  return line;
}

ProgressBar::ProgressBar(std::FILE* out, bool enabled)
    : out_(out), enabled_(enabled), tty_(isatty(fileno(out)) != 0) {}

void ProgressBar::Update(const coordinator::JobProgress& p) {
  if (!enabled_) return;
  std::string line = FormatProgressLine(p);
  if (tty_) {
    std::fprintf(out_, "\r%s\033[K", line.c_str());
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
  last_ = std::move(line);
}

void ProgressBar::Finish() {
  if (!enabled_) return;
  if (tty_ && !last_.empty()) std::fprintf(out_, "\n");
  std::fflush(out_);
}

}  // namespace baq::cli
