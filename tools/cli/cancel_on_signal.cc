#include "tools/cli/cancel_on_signal.h"

#include <unistd.h>

#include <cstdio>

namespace baq::cli {

CancelOnSignal::CancelOnSignal(std::function<void()> cancel) : cancel_(std::move(cancel)) {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals_, &old_mask_);
  watcher_ = std::thread([this] { Watch(); });
}

CancelOnSignal::~CancelOnSignal() {
  done_.store(true);
  // Wakes sigwait in the watcher (the signal is blocked there, so it is
  // taken by sigwait, never delivered).
  pthread_kill(watcher_.native_handle(), SIGTERM);
  watcher_.join();
  pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

void CancelOnSignal::Watch() {
  while (true) {
    int signal = 0;
    if (sigwait(&signals_, &signal) != 0) continue;
    if (done_.load()) return;
    if (signalled_.exchange(true)) {
      std::fprintf(stderr, "\nbaq: signal %d again: exiting now (the output is not published)\n",
                   signal);
      _exit(128 + signal);
    }
    std::fprintf(stderr,
                 "\nbaq: signal %d: cancelling the job (stops within a layer; nothing is "
                 "published); again to exit at once\n",
                 signal);
    cancel_();
  }
}

}  // namespace baq::cli
