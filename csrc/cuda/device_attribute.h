// A CUDA device attribute, read once per device: attributes do not change, and the ops and
// the launchers ask on every call (compute capability, SM count, shared-memory opt-in).
// Host code only, torch-free: the ops (common/op_support.h) and the .cu launchers share it.
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>

namespace vk {
namespace cuda {

// kAttr of `device` into value; the runtime's error where the read fails (nothing cached).
template <cudaDeviceAttr kAttr>
cudaError_t device_attribute(int device, int& value) {
  static std::atomic<int> cache[64] = {};  // value + 1; 0: not read yet (devices past 64: not cached)
  const bool cached = device >= 0 && device < 64;
  if (cached) {
    const int have = cache[device].load(std::memory_order_relaxed);
    if (have > 0) {
      value = have - 1;
      return cudaSuccess;
    }
  }
  const cudaError_t e = cudaDeviceGetAttribute(&value, kAttr, device);
  if (e == cudaSuccess && cached) cache[device].store(value + 1, std::memory_order_relaxed);
  return e;
}

}  // namespace cuda
}  // namespace vk
