// tensor_core_input: x as the tensor-core kernels read it (their GEMM's A): out (N, H, W,
// Cp) dense, i.e. (N, Cp, H, W) channels_last, from x (N, C, H, W) with any strides,
// channels C..Cp-1 zero (Cp: C padded to a multiple of 8, for VGG's C = 3 layer). The
// op runs it where x is not already so (an NCHW x; a channels_last x with C % 8 != 0; a
// strided or misaligned view). Values are copied, not rounded (TF32 is the main loops'
// business: mma.sync rounds x's fragments, the wgmma tiles round x in shared memory before
// wgmma reads it).
//
// Why a kernel of our own: ATen's x.contiguous(channels_last) walks y's order, so from
// an NCHW x each lane of a warp reads another channel plane (32 sectors per 32 elements,
// at best met again in L2 by the next warps), and a padded C cost two more passes (a zero
// fill and a copy into a strided view). Here both sides move whole 32-byte sectors.
//
// Tiling. Each lane moves one 16-byte chunk of a pixel's channels (8 in 16 bits, 4 in
// fp32): it loads those channels one element at a time from x and stores them as one
// 16-byte vector. A pixel's row of Cp channels is G = Cp * sizeof(T) / 16 chunks.
//   - G even (every fp32 Cp; 16-bit Cp % 16 == 0): U = 2 consecutive lanes take a pixel's
//     two chunks of one 32-byte sector, so a warp covers 16 pixels x one sector of their
//     channels. Its stores are 16 whole sectors; each of its loads reads, in 2 planes, 16
//     consecutive pixels: 32 or 64 bytes per plane, whole sectors where the run is
//     aligned (an NCHW plane of H*W % 16 == 0: every VGG layer but 14x14).
//   - G odd (16-bit Cp % 16 == 8, e.g. VGG's C = 3 -> 8): U = 1, a warp covers 32 pixels x
//     one chunk; with G = 1 its stores are 512 contiguous bytes.
// An item is (tile of 32/U pixels, group of U chunks, lane); consecutive warps take a
// tile's chunk groups, so a tile's rows of out (a contiguous run) are written whole by
// neighbouring warps.
// A grid-stride loop over items (1-D grid of 256-thread blocks); the padding channels are
// not loaded (the load is predicated off, giving zero). int32 offsets when every one fits,
// else int64.
// Global memory, counted by the emulator (tests/test_tensor_core_input.py): each byte of x
// read once, each of out written once, in whole sectors on 16x16 planes.
// Measured (one H200, `bash benchmarks/device_run.sh` on commit a95939d, this kernel
// unchanged since: benchmarks/results/2026-12-04_H200_a95939d.json, batch 64, CUDA-event medians),
// the "layout" rows, fp16, on the NCHW input of every VGG16 layer: 2.9-3.2 TB/s (61-68% of
// the 4.8 TB/s HBM peak) from 56^2 up, 2.6-2.9 at 28^2, 2.1 at 14^2, 2.2 for C = 3 -> 8;
// ATen's x.contiguous(channels_last): 0.67-1.05 TB/s, 2.2-4.5x slower.
#pragma once

#include "numeric.cuh"

namespace vk {
namespace VK_KERNEL_NS {

template <class Index>
struct TensorCoreInputParams {
  Index N, C, H, W, Cp;
  Index sn, sc, sh, sw;  // x's strides, in elements
};

template <class T, int U, class Index>
__global__ void __launch_bounds__(256)
    tensor_core_input_kernel(const T* __restrict__ x, T* __restrict__ out, const TensorCoreInputParams<Index> p) {
  constexpr int kChunk = 16 / sizeof(T);  // channels per lane
  constexpr int kPixels = 32 / U;         // pixels per warp
  const Index pixels = p.N * p.H * p.W;
  const Index groups = p.Cp / (kChunk * U);
  const Index total = (pixels + kPixels - 1) / kPixels * groups * 32;
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int lane = static_cast<int>(i % 32);
    const Index warp_item = i / 32;
    const Index chunk = warp_item % groups * U + lane % U;
    const Index pixel = warp_item / groups * kPixels + lane / U;
    const bool inside = pixel < pixels;
    const Index q = inside ? pixel : 0;  // lanes past the last pixel load and store nothing
    const Index w = q % p.W, nh = q / p.W;
    const T* src = x + (nh / p.H) * p.sn + (nh % p.H) * p.sh + w * p.sw;
    Vec<T, kChunk> v;
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      const Index c = chunk * kChunk + j;
      const bool real = inside && c < p.C;
      v.v[j] = ld_global(src + (real ? c : 0) * p.sc, real);  // T{} (zero) where predicated off
    }
    st_global(reinterpret_cast<Vec<T, kChunk>*>(out + q * p.Cp) + chunk, v, inside);
  }
}

}  // namespace VK_KERNEL_NS
}  // namespace vk
