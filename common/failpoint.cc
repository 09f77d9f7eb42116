#include "common/failpoint.h"

#ifdef BAQ_ENABLE_FAILPOINTS
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#endif

namespace baq::failpoint {

#ifndef BAQ_ENABLE_FAILPOINTS

bool Enabled() { return false; }
absl::Status Eval(absl::string_view) { return absl::OkStatus(); }
absl::Status Configure(absl::string_view) {
  return absl::FailedPreconditionError(
      "failpoints are not compiled in (configure with -DBAQ_ENABLE_FAILPOINTS=ON)");
}

#else

namespace {

enum class Kind { kCrash, kError, kEnospc, kSleep };

struct Action {
  Kind kind = Kind::kError;
  int64_t sleep_ms = 0;
  int64_t only_hit = 0;  // 0: every hit; N: only the N-th.
  int64_t hits = 0;
};

struct Registry {
  absl::Mutex mu;
  bool loaded ABSL_GUARDED_BY(mu) = false;
  absl::Status config_error ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, Action> actions ABSL_GUARDED_BY(mu);
};

Registry& GetRegistry() {
  static Registry* registry = new Registry();  // Never destroyed: used until exit.
  return *registry;
}

absl::Status Malformed(absl::string_view entry, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("BAQ_FAILPOINTS entry \"", entry, "\": ", why,
                   " (expected name=crash|error|enospc|sleep(MS)[@N])"));
}

absl::StatusOr<absl::flat_hash_map<std::string, Action>> Parse(absl::string_view spec) {
  absl::flat_hash_map<std::string, Action> actions;
  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    const size_t eq = entry.find('=');
    if (eq == absl::string_view::npos || eq == 0) return Malformed(entry, "no name=action");
    const std::string name(entry.substr(0, eq));
    absl::string_view action = entry.substr(eq + 1);
    Action a;
    if (const size_t at = action.rfind('@'); at != absl::string_view::npos) {
      if (!absl::SimpleAtoi(action.substr(at + 1), &a.only_hit) || a.only_hit < 1) {
        return Malformed(entry, "@N needs a positive hit number");
      }
      action = action.substr(0, at);
    }
    if (action == "crash") {
      a.kind = Kind::kCrash;
    } else if (action == "error") {
      a.kind = Kind::kError;
    } else if (action == "enospc") {
      a.kind = Kind::kEnospc;
    } else if (absl::ConsumePrefix(&action, "sleep(") && absl::ConsumeSuffix(&action, ")") &&
               absl::SimpleAtoi(action, &a.sleep_ms) && a.sleep_ms >= 0) {
      a.kind = Kind::kSleep;
    } else {
      return Malformed(entry, "unknown action");
    }
    actions[name] = a;
  }
  return actions;
}

}  // namespace

bool Enabled() { return true; }

absl::Status Configure(absl::string_view spec) {
  absl::StatusOr<absl::flat_hash_map<std::string, Action>> actions = Parse(spec);
  if (!actions.ok()) return actions.status();
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  r.loaded = true;
  r.config_error = absl::OkStatus();
  r.actions = *std::move(actions);
  return absl::OkStatus();
}

absl::Status Eval(absl::string_view name) {
  Registry& r = GetRegistry();
  Action action;
  {
    absl::MutexLock lock(&r.mu);
    if (!r.loaded) {
      r.loaded = true;
      const char* env = std::getenv("BAQ_FAILPOINTS");
      if (env != nullptr) {
        absl::StatusOr<absl::flat_hash_map<std::string, Action>> parsed = Parse(env);
        if (parsed.ok()) {
          r.actions = *std::move(parsed);
        } else {
          r.config_error = parsed.status();
        }
      }
    }
    if (!r.config_error.ok()) return r.config_error;
    auto it = r.actions.find(name);
    if (it == r.actions.end()) return absl::OkStatus();
    ++it->second.hits;
    if (it->second.only_hit != 0 && it->second.hits != it->second.only_hit) {
      return absl::OkStatus();
    }
    action = it->second;
  }
  switch (action.kind) {
    case Kind::kCrash:
      kill(getpid(), SIGKILL);
      _exit(137);  // Not reached.
    case Kind::kError:
      return absl::InternalError(absl::StrCat("failpoint ", name, ": injected error"));
    case Kind::kEnospc:
      return absl::ResourceExhaustedError(
          absl::StrCat("failpoint ", name, ": No space left on device (injected ENOSPC)"));
    case Kind::kSleep:
      absl::SleepFor(absl::Milliseconds(action.sleep_ms));
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

#endif  // BAQ_ENABLE_FAILPOINTS

}  // namespace baq::failpoint
