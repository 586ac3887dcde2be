// server/rpc_runtime.cpp - settings of the libraries under gRPC that recd
// makes once per process, before grpc_init.
//
// Debian's Abseil is built without NDEBUG, so every absl::Mutex gRPC locks
// also records the lock order in a global graph to detect deadlock cycles:
// a graph lookup under a global lock on every acquisition, about 5% of a
// worker's CPU per Recommend in a profile of recd under load. A release
// build of Abseil does not do it; recd turns it off the same way.
#include <absl/synchronization/mutex.h>

extern "C" void rpc__runtime_init(void) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}
