// The `baq` command line. Thin: dispatches to baq_cli.
#include "tools/cli/cli.h"

int main(int argc, char** argv) { return baq::cli::Main(argc, argv); }
