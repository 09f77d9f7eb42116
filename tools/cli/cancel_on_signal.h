// tools/cli/cancel_on_signal.h
//
// CancelOnSignal turns Ctrl-C (SIGINT) and SIGTERM during a long local
// command into a clean cancel: the first signal calls `cancel` (e.g.
// JobRunner::Cancel: the engine stops between layers, the staged output is
// removed, the command returns CANCELLED); a second one exits at once with
// 128 + signal, as an impatient user expects.
//
// The constructor blocks both signals in the calling thread, so construct it
// before any other thread starts (LibTorch's pools inherit the mask); a
// watcher thread takes them with sigwait(2), so no code runs in a signal
// handler. The destructor stops the watcher and restores the mask.
// Thread-compatible: construct and destroy on one thread.
#ifndef BAQ_TOOLS_CLI_CANCEL_ON_SIGNAL_H_
#define BAQ_TOOLS_CLI_CANCEL_ON_SIGNAL_H_

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <functional>
#include <thread>

namespace baq::cli {

class CancelOnSignal {
 public:
  // `cancel` runs on the watcher thread; it must be thread-safe.
  explicit CancelOnSignal(std::function<void()> cancel);
  ~CancelOnSignal();
  CancelOnSignal(const CancelOnSignal&) = delete;
  CancelOnSignal& operator=(const CancelOnSignal&) = delete;

  // Whether a signal asked for the cancel.
  bool signalled() const { return signalled_.load(); }

 private:
  void Watch();

  const std::function<void()> cancel_;
  sigset_t signals_;
  sigset_t old_mask_;
  std::atomic<bool> done_{false};
  std::atomic<bool> signalled_{false};
  std::thread watcher_;
};

}  // namespace baq::cli

#endif  // BAQ_TOOLS_CLI_CANCEL_ON_SIGNAL_H_
