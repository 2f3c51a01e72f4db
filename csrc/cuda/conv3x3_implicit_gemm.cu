// conv3x3 (algorithm "implicit_gemm") for CUDA tensors: mma.sync on tensor cores (sm_80+).
#include "../common/backends.h"
#include "../common/conv3x3_implicit_gemm_dispatch.h"
#include "launch.cuh"

#ifndef VK_WGMMA
#define VK_WGMMA 0  // a build without sm_90a (setup.py and CMakeLists.txt define it)
#endif

// The device's facts in the args (read once per device: device_attribute.h): whether it
// runs the wgmma tiles (always read here: an sm_90a kernel traps anywhere else), and, for a
// C++ caller that leaves the plan to the launcher, its multiprocessor count and
// shared-memory opt-in (the op sets both itself).
void vk::cuda::conv3x3_implicit_gemm(const Conv3x3Args& args) {
  constexpr const char* name = "conv3x3_implicit_gemm";
  Conv3x3Args a = args;
  int device = 0, major = 0, minor = 0;
  check(cudaGetDevice(&device), name);
  check(device_attribute<cudaDevAttrComputeCapabilityMajor>(device, major), name);
  check(device_attribute<cudaDevAttrComputeCapabilityMinor>(device, minor), name);
  a.wgmma = VK_WGMMA && major == 9 && minor == 0;
  if (a.plan == nullptr) {
    int sm_count = 0, smem_optin = 0;
    check(device_attribute<cudaDevAttrMultiProcessorCount>(device, sm_count), name);
    check(device_attribute<cudaDevAttrMaxSharedMemoryPerBlockOptin>(device, smem_optin), name);
    a.sm_count = sm_count, a.smem_optin = smem_optin;
  }
  conv3x3_implicit_gemm_dispatch(a, Launcher{static_cast<cudaStream_t>(a.stream)});
}
