#include "common/trace_recorder.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/durable_file.h"
#include "common/status_util.h"
#include "nlohmann/json.hpp"

namespace baq::trace {
namespace {

// The kernel's thread id: what `top -H`, gdb and Nsight Systems show.
int64_t CurrentThreadId() {
  thread_local const int64_t tid = static_cast<int64_t>(syscall(SYS_gettid));
  return tid;
}

int64_t MonotonicNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

nlohmann::json ArgValue(const TraceArg& a) {
  switch (a.kind()) {
    case TraceArg::Kind::kInt:
      return a.int_value();
    case TraceArg::Kind::kDouble:
      return a.double_value();
    case TraceArg::Kind::kString:
      return std::string(a.string_value());
  }
  return nullptr;
}

}  // namespace

void TraceRecorder::Start(absl::string_view process_name) {
  absl::MutexLock lock(&mu_);
  process_name_ = std::string(process_name);
  events_.clear();
  dropped_ = 0;
  enabled_.store(true, std::memory_order_relaxed);
}

void TraceRecorder::SetThreadName(absl::string_view name) {
  const int64_t tid = CurrentThreadId();
  absl::MutexLock lock(&mu_);
  for (auto& [t, n] : thread_names_) {
    if (t == tid) {
      n = std::string(name);
      return;
    }
  }
  thread_names_.emplace_back(tid, std::string(name));
}

std::string TraceRecorder::ArgsJson(absl::Span<const TraceArg> args) {
  nlohmann::json j = nlohmann::json::object();
  for (const TraceArg& a : args) j[std::string(a.key())] = ArgValue(a);
  // Replace, not throw, on invalid UTF-8 (a layer name is bytes from a file).
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void TraceRecorder::Record(absl::string_view category, absl::string_view name, int64_t start_us,
                           int64_t dur_us, absl::Span<const TraceArg> args) {
  if (!enabled()) return;
  RecordJson(std::string(category), std::string(name), start_us, dur_us, ArgsJson(args));
}

void TraceRecorder::RecordJson(std::string category, std::string name, int64_t start_us,
                               int64_t dur_us, std::string args_json) {
  const int64_t tid = CurrentThreadId();
  absl::MutexLock lock(&mu_);
  if (!enabled()) return;  // Stopped while the span ran.
  if (events_.size() >= max_events_) {
    ++dropped_;
    return;
  }
  events_.push_back(
      Event{std::move(category), std::move(name), tid, start_us, dur_us, std::move(args_json)});
}

std::string TraceRecorder::ToJson() const {
  const int64_t pid = static_cast<int64_t>(getpid());
  nlohmann::json events = nlohmann::json::array();
  absl::MutexLock lock(&mu_);
  events.push_back({{"ph", "M"},
                    {"pid", pid},
                    {"tid", pid},
                    {"name", "process_name"},
                    {"args", {{"name", process_name_}}}});
  for (const auto& [tid, name] : thread_names_) {
    events.push_back({{"ph", "M"},
                      {"pid", pid},
                      {"tid", tid},
                      {"name", "thread_name"},
                      {"args", {{"name", name}}}});
  }
  for (const Event& e : events_) {
    events.push_back({{"ph", "X"},
                      {"pid", pid},
                      {"tid", e.tid},
                      {"cat", e.category},
                      {"name", e.name},
                      {"ts", e.start_us},
                      {"dur", e.dur_us},
                      {"args", nlohmann::json::parse(e.args_json)}});
  }
  nlohmann::json doc = {{"traceEvents", std::move(events)},
                        {"displayTimeUnit", "ms"},
                        {"otherData", {{"dropped_events", dropped_}}}};
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::Status TraceRecorder::WriteFile(const std::string& path) const {
  const std::string json = ToJson();
  return Annotate(WriteFileDurably(path, {json, "\n"}), absl::StrCat("trace file ", path));
}

size_t TraceRecorder::num_events() const {
  absl::MutexLock lock(&mu_);
  return events_.size();
}

size_t TraceRecorder::dropped_events() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

TraceRecorder& GlobalTraceRecorder() {
  static TraceRecorder* const recorder = new TraceRecorder();  // Never destroyed.
  return *recorder;
}

void StartGlobalTrace(const std::string& path, absl::string_view process_name) {
  if (!path.empty()) GlobalTraceRecorder().Start(process_name);
}

absl::Status FinishGlobalTrace(const std::string& path) {
  if (path.empty()) return absl::OkStatus();
  GlobalTraceRecorder().Stop();
  return GlobalTraceRecorder().WriteFile(path);
}

ScopedSpan::ScopedSpan(TraceRecorder* recorder, absl::string_view category, absl::string_view name,
                       std::initializer_list<TraceArg> args) {
  const absl::Span<const TraceArg> arg_span(args.begin(), args.size());
  if (internal::NvtxEnabled()) {
    internal::NvtxPush(name, arg_span);
    nvtx_ = true;
  }
  if (recorder == nullptr || !recorder->enabled()) return;
  recorder_ = recorder;
  category_ = std::string(category);
  name_ = std::string(name);
  args_json_ = TraceRecorder::ArgsJson(arg_span);
  start_us_ = absl::GetCurrentTimeNanos() / 1000;
  start_ns_ = MonotonicNanos();
}

ScopedSpan::~ScopedSpan() {
  if (recorder_ != nullptr) {
    if (void (*hook)() = recorder_->span_end_hook(); hook != nullptr) hook();
    const int64_t dur_us = (MonotonicNanos() - start_ns_) / 1000;
    recorder_->RecordJson(std::move(category_), std::move(name_), start_us_, dur_us,
                          std::move(args_json_));
  }
  if (nvtx_) internal::NvtxPop();
}

namespace internal {

std::string FormatArgs(absl::Span<const TraceArg> args) {
  std::string out;
  for (const TraceArg& a : args) {
    if (!out.empty()) out += ' ';
    absl::StrAppend(&out, a.key(), "=");
    switch (a.kind()) {
      case TraceArg::Kind::kInt:
        absl::StrAppend(&out, a.int_value());
        break;
      case TraceArg::Kind::kDouble:
        absl::StrAppend(&out, a.double_value());
        break;
      case TraceArg::Kind::kString:
        absl::StrAppend(&out, a.string_value());
        break;
    }
  }
  return out;
}

}  // namespace internal
}  // namespace baq::trace
