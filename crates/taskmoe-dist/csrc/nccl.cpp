// taskmoe-dist's NCCL backend, a shared library of its own (libtaskmoe_dist_nccl.so).
//
// build.rs compiles it only against a CUDA libtorch (`$LIBTORCH/lib/libtorch_cuda.so`) with the
// CUDA and NCCL headers at hand; the Rust side `dlopen`s it when a job asks for NCCL, after
// libtorch_cuda.so is loaded (src/backend.rs). The main shim (shim.cpp) stays CPU-only: it calls
// the factory below through a function pointer and drives the backend through c10d::Backend,
// the interface Gloo implements too.
//
// Same conventions as shim.cpp: NULL on success, else a malloc'd message freed with
// tmd_free_error (std::free).

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

namespace {

char* message(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, text.c_str(), text.size() + 1);
  }
  return out;
}

}  // namespace

extern "C" {

// Creates a ProcessGroupNCCL of `size` ranks over `store` (a `c10::intrusive_ptr<c10d::Store>*`,
// already namespaced for this group) on CUDA device `device`, with every collective bounded by
// `timeout_ms`; `*out` receives a `new c10::intrusive_ptr<c10d::Backend>`, owned by the caller.
// The communicator is created eagerly for `device`, so a rank that cannot reach the others
// fails here rather than in its first collective.
char* tmd_nccl_backend_new(void* store, int rank, int size, int64_t timeout_ms, int device,
                           void** out) {
  try {
    auto s = *static_cast<c10::intrusive_ptr<c10d::Store>*>(store);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(s, rank, size, options);
    backend->eagerConnectSingleDevice(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device)));
    *out = new c10::intrusive_ptr<c10d::Backend>(backend);
    return nullptr;
  } catch (const std::exception& e) {
    return message(std::string("NCCL process group creation failed: ") + e.what());
  } catch (...) {
    return message("NCCL process group creation failed with an unknown C++ exception");
  }
}

}  // extern "C"
