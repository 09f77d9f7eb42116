// tests/testing/subprocess.h
//
// Runs a program as a child process for end-to-end tests of the binaries
// (`baq quantize` under crashes and bad input): argv and extra environment
// in, exit status or terminating signal and captured output out, with an
// optional SIGKILL after a delay. Header-only (POSIX fork/exec); thread-
// compatible.
//
// Example:
//   ProcessResult r = RunProcess({BinaryDir() + "/tools/cli/baq", "quantize", ...},
//                                {"BAQ_FAILPOINTS=atomic_output_dir.before_rename=crash"});
//   EXPECT_EQ(r.signal, SIGKILL);
#ifndef BAQ_TESTS_TESTING_SUBPROCESS_H_
#define BAQ_TESTS_TESTING_SUBPROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace baq::testing {

struct ProcessResult {
  bool started = false;
  int exit_code = -1;  // When it exited.
  int signal = 0;      // When a signal ended it.
  bool killed_by_timer = false;
  std::string output;  // stdout and stderr, interleaved.
  absl::Duration wall;
};

// Runs `argv` with `env` added to this process's environment. When
// `kill_after` is finite, sends `kill_signal` (SIGKILL) once it has passed
// (if the child is still running). `output_file` receives the child's output (read back into
// the result).
inline ProcessResult RunProcess(const std::vector<std::string>& argv,
                                const std::vector<std::string>& env,
                                const std::string& output_file,
                                absl::Duration kill_after = absl::InfiniteDuration(),
                                int kill_signal = SIGKILL) {
  ProcessResult result;
  // Everything the child needs is built before fork(): after it, only
  // async-signal-safe calls.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(nullptr);
  const absl::Time start = absl::Now();
  const pid_t pid = fork();
  if (pid < 0) return result;
  if (pid == 0) {
    const int fd = open(output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  result.started = true;
  int status = 0;
  while (true) {
    const pid_t r = waitpid(pid, &status, kill_after == absl::InfiniteDuration() ? 0 : WNOHANG);
    if (r == pid) break;
    if (r < 0) return result;
    if (absl::Now() - start >= kill_after && !result.killed_by_timer) {
      kill(pid, kill_signal);
      result.killed_by_timer = true;
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  result.wall = absl::Now() - start;
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  std::ifstream in(output_file);
  std::stringstream ss;
  ss << in.rdbuf();
  result.output = ss.str();
  return result;
}

}  // namespace baq::testing

#endif  // BAQ_TESTS_TESTING_SUBPROCESS_H_
