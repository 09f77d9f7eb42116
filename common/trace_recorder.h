// common/trace_recorder.h
//
// A timeline of what a process did: named spans ("complete events") with
// their thread, start, duration and a few arguments, written as Chrome trace
// JSON ({"traceEvents": [{"ph": "X", ...}]}, microseconds) that
// chrome://tracing and https://ui.perfetto.dev load. The coordinator, the
// workers and `baq quantize` each write one with --trace_file; several files
// of one run open together on one time axis (timestamps are Unix-epoch
// microseconds, durations from the monotonic clock). docs/performance.md
// "Profiling a run" says how to get and read them.
//
// Instrumentation is one line per stage, a scoped span:
//
//   absl::StatusOr<BlockMeasurement> Engine::Measure(int64_t block) {
//     BAQ_TRACE_SCOPE("engine", "measure", {{"block", block}});
//     ...  // the span ends when the scope does, on any return path
//   }
//
// The macro records into the process's recorder (GlobalTraceRecorder()),
// which is off unless a main() started it; while off a span costs one relaxed
// atomic load (its arguments are built on the stack, nothing is copied). A
// process-wide recorder is a deliberate exception to STYLE §7 (no
// singletons): spans sit deep inside the engine, and threading a recorder
// through every call would restructure the code being measured (Chrome's
// TRACE_EVENT, Perfetto's TRACE_EVENT and NVTX make the same choice).
// Tests and tools may also use their own TraceRecorder through ScopedSpan's
// explicit-recorder constructor.
//
// Builds with BAQ_WITH_CUDA also push an NVTX range for every span, started
// or not (common/trace_nvtx.cc), so Nsight Systems shows the same stages on
// the CPU rows above the GPU kernels they launched.
//
// Spans on one thread nest (the inner one ends first). Timing is host time:
// on CUDA a span measures the work its thread waited for, not the kernels
// still queued when it ends (Nsight's GPU projection of the NVTX ranges
// shows those), unless a span-end hook synchronizes (SetSpanEndHook).
//
// Thread-safe: any thread may record, start, stop or write at any time.
// The global recorder is never destroyed, so a span outliving Stop() is safe.
#ifndef BAQ_COMMON_TRACE_RECORDER_H_
#define BAQ_COMMON_TRACE_RECORDER_H_

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace baq::trace {

// One entry of a span's "args": a key and an integer, a number or a string.
// Non-owning (the key and a string value must outlive the TraceArg): spans
// build them on the stack and the recorder copies what it keeps.
class TraceArg {
 public:
  enum class Kind { kInt, kDouble, kString };
  template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
  TraceArg(absl::string_view key, T value)
      : key_(key), kind_(Kind::kInt), int_(static_cast<int64_t>(value)) {}
  TraceArg(absl::string_view key, double value) : key_(key), kind_(Kind::kDouble), double_(value) {}
  TraceArg(absl::string_view key, absl::string_view value)
      : key_(key), kind_(Kind::kString), string_(value) {}
  TraceArg(absl::string_view key, const char* value) : TraceArg(key, absl::string_view(value)) {}
  TraceArg(absl::string_view key, const std::string& value)
      : TraceArg(key, absl::string_view(value)) {}

  absl::string_view key() const { return key_; }
  Kind kind() const { return kind_; }
  int64_t int_value() const { return int_; }
  double double_value() const { return double_; }
  absl::string_view string_value() const { return string_; }

 private:
  absl::string_view key_;
  Kind kind_;
  int64_t int_ = 0;
  double double_ = 0;
  absl::string_view string_;
};

class TraceRecorder {
 public:
  // Spans kept at most; later ones are counted as dropped (a 7B job records
  // a few thousand).
  static constexpr size_t kDefaultMaxEvents = 1 << 20;

  explicit TraceRecorder(size_t max_events = kDefaultMaxEvents) : max_events_(max_events) {}
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  // Turns recording on and drops what was recorded before. `process_name`
  // labels the process in the viewer ("coordinator", "worker host:7001",
  // "baq quantize").
  void Start(absl::string_view process_name) ABSL_LOCKS_EXCLUDED(mu_);
  // Turns recording off; what was recorded stays until the next Start().
  void Stop() { enabled_.store(false, std::memory_order_relaxed); }
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }

  // Called by every span of this recorder just before it takes its end
  // time (null: none). worker/torch/trace_cuda_sync.h installs one that waits
  // for the thread's queued CUDA work, so GPU stages get their device time.
  // REQUIRES: `hook` is thread-safe.
  void SetSpanEndHook(void (*hook)()) { span_end_hook_.store(hook, std::memory_order_relaxed); }
  void (*span_end_hook() const)() { return span_end_hook_.load(std::memory_order_relaxed); }

  // Names the calling thread in the viewer ("executor cpu", "rank 1").
  void SetThreadName(absl::string_view name) ABSL_LOCKS_EXCLUDED(mu_);

  // Records one complete event: `start_us` in Unix-epoch microseconds,
  // `dur_us` in microseconds, on the calling thread. No-op while disabled.
  void Record(absl::string_view category, absl::string_view name, int64_t start_us, int64_t dur_us,
              absl::Span<const TraceArg> args) ABSL_LOCKS_EXCLUDED(mu_);

  // The Chrome trace JSON of everything recorded so far, with the process
  // and thread names as metadata events ("ph": "M").
  std::string ToJson() const ABSL_LOCKS_EXCLUDED(mu_);
  // Writes ToJson() to `path` atomically (temp file, fsync, rename): a
  // reader sees the previous file or the complete new one. Callable while
  // recording goes on (a snapshot). Internal error naming the file.
  absl::Status WriteFile(const std::string& path) const;

  size_t num_events() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t dropped_events() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class ScopedSpan;
  // Record() with the args already as a JSON object.
  void RecordJson(std::string category, std::string name, int64_t start_us, int64_t dur_us,
                  std::string args_json) ABSL_LOCKS_EXCLUDED(mu_);
  static std::string ArgsJson(absl::Span<const TraceArg> args);

  struct Event {
    std::string category;
    std::string name;
    int64_t tid;
    int64_t start_us;
    int64_t dur_us;
    std::string args_json;  // An object, "{}" when none.
  };

  // Constant after construction.
  const size_t max_events_;

  std::atomic<bool> enabled_{false};
  std::atomic<void (*)()> span_end_hook_{nullptr};
  mutable absl::Mutex mu_;
  std::string process_name_ ABSL_GUARDED_BY(mu_);
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int64_t, std::string>> thread_names_ ABSL_GUARDED_BY(mu_);
  size_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

// The process's recorder, which BAQ_TRACE_SCOPE records into. Off until a
// main() calls Start(); never destroyed.
TraceRecorder& GlobalTraceRecorder();

// For a main() with --trace_file: StartGlobalTrace starts the global recorder
// labelled `process_name` when `path` is non-empty (else does nothing);
// FinishGlobalTrace stops it and writes `path` (OK at once when empty). Call
// Finish after the threads that record have stopped, or their last spans
// are lost.
void StartGlobalTrace(const std::string& path, absl::string_view process_name);
absl::Status FinishGlobalTrace(const std::string& path);

// Records [construction, destruction) as one span of the calling thread.
// Use through BAQ_TRACE_SCOPE; the explicit-recorder form serves tests.
class ScopedSpan {
 public:
  ScopedSpan(absl::string_view category, absl::string_view name,
             std::initializer_list<TraceArg> args = {})
      : ScopedSpan(&GlobalTraceRecorder(), category, name, args) {}
  ScopedSpan(TraceRecorder* recorder, absl::string_view category, absl::string_view name,
             std::initializer_list<TraceArg> args = {});
  ~ScopedSpan();
  ScopedSpan(const ScopedSpan&) = delete;
  ScopedSpan& operator=(const ScopedSpan&) = delete;

 private:
  TraceRecorder* recorder_ = nullptr;  // Null when not recording. Not owned.
  bool nvtx_ = false;                  // An NVTX range was pushed.
  std::string category_;
  std::string name_;
  std::string args_json_;
  int64_t start_us_ = 0;
  int64_t start_ns_ = 0;  // Monotonic.
};

namespace internal {
// NVTX hooks (common/trace_nvtx.cc): ranges when built with BAQ_WITH_CUDA,
// no-ops (NvtxEnabled() false) otherwise.
bool NvtxEnabled();
void NvtxPush(absl::string_view name, absl::Span<const TraceArg> args);
void NvtxPop();
// "block=3 layer=self_attn.q_proj": the args as NVTX shows them.
std::string FormatArgs(absl::Span<const TraceArg> args);
}  // namespace internal

}  // namespace baq::trace

#define BAQ_TRACE_INTERNAL_CONCAT2(a, b) a##b
#define BAQ_TRACE_INTERNAL_CONCAT(a, b) BAQ_TRACE_INTERNAL_CONCAT2(a, b)
// BAQ_TRACE_SCOPE(category, name[, {{"key", value}, ...}]): a span from here
// to the end of the enclosing scope, in GlobalTraceRecorder().
#define BAQ_TRACE_SCOPE(...) \
  ::baq::trace::ScopedSpan BAQ_TRACE_INTERNAL_CONCAT(baq_trace_span_, __LINE__)(__VA_ARGS__)

#endif  // BAQ_COMMON_TRACE_RECORDER_H_
