// Launching a kernel on the GPU with a LaunchGeometry, on the caller's stream.
#pragma once

#include <cuda_runtime.h>

#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include "../common/launch_geometry.h"

namespace vk {
namespace cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("vggkern: ") + what + " failed: " + cudaGetErrorString(e));
}

// Opts a kernel into more than 48 KiB of dynamic shared memory, once per kernel, device
// and size (the attribute persists; setting it on every launch would cost host time).
inline void opt_in_shared_memory(const void* kernel, size_t bytes, const char* name) {
  static std::mutex mutex;
  static std::set<std::pair<std::pair<const void*, int>, size_t>> done;
  int device = 0;
  check(cudaGetDevice(&device), name);
  const auto key = std::make_pair(std::make_pair(kernel, device), bytes);
  std::lock_guard<std::mutex> lock(mutex);
  if (done.count(key)) return;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)), name);
  done.insert(key);
}

// The launcher policy the per-kernel dispatch templates take.
struct Launcher {
  cudaStream_t stream;
  template <class... Params, class... Args>
  void operator()(const char* name, void (*kernel)(Params...), const LaunchGeometry& g, Args... args) const {
    if (g.smem_bytes > 48 * 1024) opt_in_shared_memory(reinterpret_cast<const void*>(kernel), g.smem_bytes, name);
    kernel<<<dim3(g.grid.x, g.grid.y, g.grid.z), dim3(g.block.x, g.block.y, g.block.z), g.smem_bytes, stream>>>(
        args...);
    check(cudaGetLastError(), name);
  }
};

}  // namespace cuda
}  // namespace vk
