// Launching a kernel on the GPU with a LaunchGeometry, on the caller's stream.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "../common/launch_geometry.h"
#include "device_attribute.h"

namespace vk {
namespace cuda {

#ifndef VK_CUDA_ARCHS
#define VK_CUDA_ARCHS "(not recorded)"  // setup.py defines it (TORCH_CUDA_ARCH_LIST)
#endif

// A failed call's message; a launch on a GPU the build has no kernels for says which
// architectures it has and how to build for this one.
inline void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::string msg = std::string("vggkern: ") + what + " failed: " + cudaGetErrorString(e);
  int device = 0, major = 0, minor = 0;
  if (e == cudaErrorNoKernelImageForDevice && cudaGetDevice(&device) == cudaSuccess &&
      device_attribute<cudaDevAttrComputeCapabilityMajor>(device, major) == cudaSuccess &&
      device_attribute<cudaDevAttrComputeCapabilityMinor>(device, minor) == cudaSuccess) {
    const std::string cc = std::to_string(major) + "." + std::to_string(minor);
    msg += " (cuda:" + std::to_string(device) + " is compute capability " + cc +
           "; vggkern was built for TORCH_CUDA_ARCH_LIST=" VK_CUDA_ARCHS ": rebuild with TORCH_CUDA_ARCH_LIST=" + cc +
           (cc == "9.0" ? "a" : "") + ")";
  }
  throw std::runtime_error(msg);
}

// Opts a kernel into more than 48 KiB of dynamic shared memory on the current device. The
// attribute persists and is a maximum, so it is raised only when a launch needs more than
// any before it (setting it on every launch would cost host time; setting it to a smaller
// size would break a later, larger launch of the same kernel).
inline void opt_in_shared_memory(const void* kernel, size_t bytes, const char* name) {
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, size_t> granted;
  int device = 0;
  check(cudaGetDevice(&device), name);
  std::lock_guard<std::mutex> lock(mutex);
  size_t& have = granted[std::make_pair(kernel, device)];
  if (bytes <= have) return;
  int limit = 0;  // what a block may opt in to on this device (99 KiB on compute capability 8.6/8.9)
  check(device_attribute<cudaDevAttrMaxSharedMemoryPerBlockOptin>(device, limit), name);
  if (bytes > static_cast<size_t>(limit))
    throw std::runtime_error(std::string("vggkern: ") + name + " needs " + std::to_string(bytes) +
                             " bytes of shared memory per block, more than this GPU (cuda:" + std::to_string(device) +
                             ") allows (" + std::to_string(limit) + ")");
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)), name);
  have = bytes;
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
