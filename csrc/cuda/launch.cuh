// Launching a kernel on the GPU with a LaunchGeometry, on the caller's stream.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "../common/launch_geometry.h"

namespace vk {
namespace cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("vggkern: ") + what + " failed: " + cudaGetErrorString(e));
}

// The launcher policy the per-kernel dispatch templates take. Kernels with more than
// 48 KiB of dynamic shared memory are opted in before the launch.
struct Launcher {
  cudaStream_t stream;
  template <class... Params, class... Args>
  void operator()(const char* name, void (*kernel)(Params...), const LaunchGeometry& g, Args... args) const {
    if (g.smem_bytes > 48 * 1024)
      check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(g.smem_bytes)),
            name);
    kernel<<<dim3(g.grid.x, g.grid.y, g.grid.z), dim3(g.block.x, g.block.y, g.block.z), g.smem_bytes, stream>>>(
        args...);
    check(cudaGetLastError(), name);
  }
};

}  // namespace cuda
}  // namespace vk
