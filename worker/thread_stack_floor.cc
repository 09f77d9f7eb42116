// worker/thread_stack_floor.cc
//
// A floor under explicit thread stack sizes, for every library in a process
// that links baq_worker (STYLE R4: the one place that knows about it).
//
// Why: glibc's pthread_create fails with EINVAL when an explicitly sized
// stack cannot hold the process's static TLS. civetweb (under
// prometheus-cpp's Exposer, the /metrics endpoint) is built with 100 KiB
// thread stacks (CMake CIVETWEB_THREAD_STACK_SIZE = 102400, no runtime
// option), and the CUDA LibTorch wheel's libraries bring more static TLS than
// that. So in a CUDA worker civetweb could not start a single thread ("Cannot
// create threads", seen on the H100/H200 device machines with
// bench/device/civetweb_probe.c and LibTorch CUDA preloaded) and the Exposer
// threw CivetException; with CPU LibTorch the TLS fits and it works.
//
// How: this definition of pthread_attr_setstacksize is linked into and
// exported from each executable that links baq_worker
// (worker/CMakeLists.txt: -u and --export-dynamic-symbol), so the dynamic
// linker binds the calls of all shared libraries to it; it raises requests
// below kMinThreadStack to kMinThreadStack and calls glibc's. Stacks are
// reserved virtual memory, touched only as used, so the floor costs address
// space, not RAM.
//
// Thread-safe (the glibc symbol is looked up once, under a static-init guard).
#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>

namespace {

// glibc's default stack size (RLIMIT_STACK of 8 MiB) on Linux distributions.
constexpr size_t kMinThreadStack = size_t{8} << 20;

using SetStackSizeFn = int (*)(pthread_attr_t*, size_t);

SetStackSizeFn GlibcSetStackSize() {
  static const SetStackSizeFn fn =
      reinterpret_cast<SetStackSizeFn>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  return fn;
}

}  // namespace

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t stacksize) {
  const SetStackSizeFn fn = GlibcSetStackSize();
  if (fn == nullptr) return ENOSYS;
  return fn(attr, std::max(stacksize, kMinThreadStack));
}
