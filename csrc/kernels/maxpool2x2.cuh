// maxpool2x2: y = max_pool2d(x, kernel 2, stride 2), floor mode. x (N, C, H, W) ->
// y (N, C, H/2, W/2); an odd last row/column is dropped, as torch does.
//
// Tiling: memory-bound, one read of x and one write of y, so each thread owns a small
// contiguous piece of y and a grid-stride loop covers the rest (1-D grid, 256 threads).
//   NCHW: a thread makes OUT adjacent outputs of one output row from two input rows
//         of 2*OUT elements each; with kVector those rows are single 16- (or 8-) byte
//         loads: 2*OUT*sizeof(T) bytes, OUT = 2 (fp32) or 4 (fp16/bf16).
//   NHWC: a thread makes V adjacent channels of one output pixel from the four window
//         pixels' V channels; with kVector those are 16-byte loads (V = 16/sizeof(T)).
// No shared memory. Max follows torch's rule (greater, or NaN) in window order, so the
// result equals torch's bit for bit. Index is int32 when every offset fits, else int64.
// Global memory, counted by the emulator: each byte of x read once and of y written once,
// in whole 32-byte sectors (tests/test_global_sectors.py).
// Measured (one H200, `bash benchmarks/device_run.sh` on commit a95939d, this kernel
// unchanged since: benchmarks/results/2026-12-04_H200_a95939d.json, batch 64, CUDA-event medians):
// 4.1-4.4 TB/s (86-91% of the 4.8 TB/s HBM peak) on VGG's 64 x 224^2 and 128 x 112^2
// pools in every dtype (fp32 4.3-4.4); 3.9-4.2 on 256 x 56^2 and fp32's 512 x 28^2 (16-bit:
// 3.1-3.5); the smallest (512 x 14^2: 13 MB in fp16) 1.2 (bf16) to 1.6 (fp16) TB/s and
// 2.7-3.2 in fp32, too few bytes to hide the launch and the ramp. torch's: 0.85 (16-bit) and 1.7 TB/s (fp32) on
// the four larger pools, 2.4-5.1x slower.
#pragma once

#include "numeric.cuh"

namespace vk {
namespace VK_KERNEL_NS {

template <class T, int N, bool kVector>
__device__ __forceinline__ Vec<T, N> load_run(const T* p) {
  if constexpr (kVector) {
    return ld_global(reinterpret_cast<const Vec<T, N>*>(p));
  } else {
    Vec<T, N> r;
#pragma unroll
    for (int i = 0; i < N; ++i) r.v[i] = ld_global(p + i);
    return r;
  }
}

template <class T, int N, bool kVector>
__device__ __forceinline__ void store_run(T* p, const Vec<T, N>& r) {
  if constexpr (kVector) {
    st_global(reinterpret_cast<Vec<T, N>*>(p), r);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) st_global(p + i, r.v[i]);
  }
}

template <class T>
__device__ __forceinline__ T window_max(T a, T b, T c, T d) {  // (0,0) (0,1) (1,0) (1,1)
  return max_step(max_step(max_step(a, b), c), d);
}

// NCHW: item i = (plane = n*C + c, ho, group of OUT outputs along wo).
template <class T, int OUT, bool kVector, class Index>
__global__ void __launch_bounds__(256)
    maxpool2x2_nchw_kernel(const T* __restrict__ x, T* __restrict__ y, Index planes, Index H, Index W, Index Ho,
                           Index Wo) {
  const Index groups = Wo / OUT;
  const Index total = planes * Ho * groups;
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const Index g = i % groups;
    const Index row = i / groups;  // plane * Ho + ho
    const Index ho = row % Ho;
    const Index plane = row / Ho;
    const T* r0 = x + (plane * H + 2 * ho) * W + 2 * OUT * g;
    const Vec<T, 2 * OUT> top = load_run<T, 2 * OUT, kVector>(r0);
    const Vec<T, 2 * OUT> bottom = load_run<T, 2 * OUT, kVector>(r0 + W);
    Vec<T, OUT> out;
#pragma unroll
    for (int j = 0; j < OUT; ++j)
      out.v[j] = window_max(top.v[2 * j], top.v[2 * j + 1], bottom.v[2 * j], bottom.v[2 * j + 1]);
    store_run<T, OUT, kVector>(y + row * Wo + OUT * g, out);
  }
}

// NHWC: item i = (n, ho, wo, group of V channels).
template <class T, int V, bool kVector, class Index>
__global__ void __launch_bounds__(256)
    maxpool2x2_nhwc_kernel(const T* __restrict__ x, T* __restrict__ y, Index N, Index C, Index H, Index W, Index Ho,
                           Index Wo) {
  const Index groups = C / V;
  const Index total = N * Ho * Wo * groups;
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const Index g = i % groups;
    const Index pixel = i / groups;  // (n * Ho + ho) * Wo + wo
    const Index wo = pixel % Wo;
    const Index nho = pixel / Wo;
    const Index ho = nho % Ho;
    const Index n = nho / Ho;
    const T* p00 = x + ((n * H + 2 * ho) * W + 2 * wo) * C + V * g;
    const Vec<T, V> a = load_run<T, V, kVector>(p00);
    const Vec<T, V> b = load_run<T, V, kVector>(p00 + C);
    const Vec<T, V> c = load_run<T, V, kVector>(p00 + W * C);
    const Vec<T, V> d = load_run<T, V, kVector>(p00 + W * C + C);
    Vec<T, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j) out.v[j] = window_max(a.v[j], b.v[j], c.v[j], d.v[j]);
    store_run<T, V, kVector>(y + pixel * C + V * g, out);
  }
}

}  // namespace VK_KERNEL_NS
}  // namespace vk
