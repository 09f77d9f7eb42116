#include "tools/cli/cli.h"

#include <cstdio>
#include <cstring>

namespace baq::cli {

int Main(int argc, char** argv) {
  std::printf("baq: usage: baq <command> [flags]\n");
  return argc > 1 && std::strcmp(argv[1], "--help") == 0 ? 0 : 2;
}

}  // namespace baq::cli
