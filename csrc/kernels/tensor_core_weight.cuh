// tensor_core_weight: the weight as the tensor-core kernels read it (their GEMM's B, or
// wgmma_t's A): out (K, 3, 3, Cp) contiguous from weight (K, C, 3, 3) with any strides,
// channels C..Cp-1 zero (Cp: C padded to a multiple of 8, for VGG's C = 3 layer), and for
// float32 every value rounded to TF32 (cvt.rna: nearest, ties away from zero), so that
// neither main loop converts it: mma.sync's rounds only x's fragments, and wgmma reads
// the stages as they are.
// One pass, one launch, where the op used ATen's permute copy (plus a zero fill and a
// second copy where C is padded) and five elementwise launches for the rounding. (A
// 16-bit weight already laid out so, as nn.Conv3x3 keeps it, is used as it is.) One
// thread per output element, consecutive threads on consecutive channels: the stores are
// coalesced, the loads strided by weight's C stride (a weight is at most 512 x 512 x 9
// floats, 9.4 MB, read once: the emulator counts ~9x the sectors of its bytes for a
// (K, C, 3, 3) weight, whole sectors for one already (K, 3, 3, C)). 64-bit indexes.
#pragma once

#include <cstdint>

#include "numeric.cuh"
#include "tensor_core.cuh"

namespace vk {
namespace VK_KERNEL_NS {

struct TensorCoreWeightParams {
  int64_t K, C, Cp;
  int64_t sk, sc, sr, ss;  // weight's strides, in elements
  int round_tf32;          // float32 only
};

template <class T>
__global__ void __launch_bounds__(256)
    tensor_core_weight_kernel(const T* __restrict__ w, T* __restrict__ out, const TensorCoreWeightParams p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * 256 + threadIdx.x;
  if (i >= p.K * 9 * p.Cp) return;
  const int64_t c = i % p.Cp, tap = i / p.Cp % 9, k = i / (9 * p.Cp);
  T v = from_float<T>(0.f);
  if (c < p.C) {
    v = ld_global(w + (k * p.sk + c * p.sc + tap / 3 * p.sr + tap % 3 * p.ss));
    if constexpr (sizeof(T) == 4) {
      if (p.round_tf32) v = __uint_as_float(to_tf32(v));
    }
  }
  st_global(out + i, v);
}

}  // namespace VK_KERNEL_NS
}  // namespace vk
