// Element types and their conversions, the same under nvcc and the emulator: kernels
// compute in float and convert explicitly (no implicit __half conversions exist in a
// torch CUDA build, nor in the emulator).
#pragma once

#include "simt.cuh"

namespace vk {
namespace VK_KERNEL_NS {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <class T>
__device__ __forceinline__ bool is_nan(T v) {
  const float f = to_float(v);  // exact for every element type
  return f != f;
}

// The running-max step of torch's max_pool2d: a value replaces the maximum when it is
// greater or NaN. Applied in window order it matches torch bit for bit, NaN included
// (fmaxf would drop the NaN).
template <class T>
__device__ __forceinline__ T max_step(T running, T v) {
  return (to_float(v) > to_float(running) || is_nan(v)) ? v : running;
}

// N elements moved as one aligned access (16 bytes: one ld.global.v4 / st.global.v4).
template <class T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

}  // namespace VK_KERNEL_NS
}  // namespace vk
