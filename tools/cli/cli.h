// tools/cli/cli.h
//
// Entry point of the `baq` command line: parses the subcommand and its flags
// and runs it. Each subcommand lives in its own *_command.cc. Not thread-safe
// (called once from main).
#ifndef BAQ_TOOLS_CLI_CLI_H_
#define BAQ_TOOLS_CLI_CLI_H_

namespace baq::cli {

// Returns the process exit code: 0 on success, 1 on a failed command, 2 on a
// usage error.
int Main(int argc, char** argv);

}  // namespace baq::cli

#endif  // BAQ_TOOLS_CLI_CLI_H_
