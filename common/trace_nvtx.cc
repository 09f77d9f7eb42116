// The NVTX hook of BAQ_TRACE_SCOPE (common/trace_recorder.h): with
// BAQ_TRACE_NVTX (CMake sets it for this file alone when BAQ_WITH_CUDA is ON)
// every span is also an NVTX range in the "baq" domain, named like
// "measure block=3", which Nsight Systems shows on the thread's row and
// projects onto the GPU. NVTX 3 is header-only: without a profiler attached
// a push is a call through a null-tool pointer. Without BAQ_TRACE_NVTX
// the hooks are no-ops and NvtxEnabled() is false.
#include "common/trace_recorder.h"

#if BAQ_TRACE_NVTX
#include <nvtx3/nvToolsExt.h>

#include <string>
#endif

namespace baq::trace::internal {

#if BAQ_TRACE_NVTX

namespace {
nvtxDomainHandle_t Domain() {
  static const nvtxDomainHandle_t domain = nvtxDomainCreateA("baq");
  return domain;
}
}  // namespace

bool NvtxEnabled() { return true; }

void NvtxPush(absl::string_view name, absl::Span<const TraceArg> args) {
  std::string message(name);
  if (!args.empty()) message += " " + FormatArgs(args);
  nvtxEventAttributes_t attributes = {};
  attributes.version = NVTX_VERSION;
  attributes.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  attributes.messageType = NVTX_MESSAGE_TYPE_ASCII;
  attributes.message.ascii = message.c_str();  // Copied by the tool during the call.
  nvtxDomainRangePushEx(Domain(), &attributes);
}

void NvtxPop() { nvtxDomainRangePop(Domain()); }

#else

bool NvtxEnabled() { return false; }
void NvtxPush(absl::string_view, absl::Span<const TraceArg>) {}
void NvtxPop() {}

#endif

}  // namespace baq::trace::internal
