#include "common/version.h"

#ifndef BAQ_VERSION
#error "BAQ_VERSION must be defined by the build (common/CMakeLists.txt)"
#endif

namespace baq {

absl::string_view BaqVersion() { return BAQ_VERSION; }

}  // namespace baq
