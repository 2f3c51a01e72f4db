// Tensor-core and async-copy instructions behind small wrappers with two bodies:
// inline PTX under nvcc (sm_80 and newer), and the SIMT emulator's warp-collective
// emulation of the same instruction on the CPU (csrc/emu/tensor_core_emu.cpp), which
// follows the PTX ISA's fragment layouts. With g = lane / 4 and t = lane % 4:
//
//   mma_m16n8k16 (f16/bf16, fp32 accumulate)   D(16x8) = A(16x16) * B(16x8) + C
//     a[r] holds 2 elements: A[g + 8*(r&1)][2t + 8*(r>>1) + {0,1}]       (r = 0..3)
//     b[r] holds 2 elements: B[2t + 8*r + {0,1}][g]                      (r = 0..1)
//     c[i], d[i]:            C[g + 8*(i>>1)][2t + (i&1)]                 (i = 0..3)
//   mma_m16n8k8_tf32                            D(16x8) = A(16x8) * B(8x8) + C
//     a[r]: A[g + 8*(r&1)][t + 4*(r>>1)];  b[r]: B[t + 4*r][g];  c, d as above
//   ldmatrix_x{1,2,4}(r, p): matrix j's row i comes from lane 8j+i's address p (16-byte
//     aligned, shared); r[j] = M_j[g][2t + {0,1}], or with _trans M_j[2t + {0,1}][g].
//   cp_async_16(dst, src, n): 16 bytes global -> shared, the first n from src and zeros
//     after; visible after cp_async_wait<k>() (all but the k newest committed groups)
//     and a barrier. The emulator delays the write to the wait, so reading early shows.
//
// A wrapper is trusted only after the same kernel matched on a real GPU once: the
// emulation encodes our reading of the ISA, and only hardware can confirm it.
#pragma once

#include <cstdint>

#include "simt.cuh"

#if !defined(__CUDACC__)
#include "../emu/tensor_core_emu.h"
#endif

namespace vk {
namespace VK_KERNEL_NS {

// The math of a kernel's mma: f16/bf16 through mma_m16n8k16, tf32 through mma_m16n8k8_tf32.
enum class MmaType { f16, bf16, tf32 };

template <MmaType kType>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                             const float (&c)[4]) {
  static_assert(kType != MmaType::tf32, "tf32 is mma_m16n8k8_tf32");
#if defined(__CUDACC__)
  if constexpr (kType == MmaType::f16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
  }
#else
  ::vk::emu::mma_sync(kType == MmaType::f16 ? ::vk::emu::MmaInput::f16 : ::vk::emu::MmaInput::bf16, d, a, b, c,
                      __FILE__, __LINE__);
#endif
}

__device__ __forceinline__ void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                 const float (&c)[4]) {
#if defined(__CUDACC__)
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#else
  ::vk::emu::mma_sync(::vk::emu::MmaInput::tf32, d, a, b, c, __FILE__, __LINE__);
#endif
}

// fp32 -> tf32, round to nearest (ties away), as cvt.rna.tf32.f32; the low 13 bits are zero.
__device__ __forceinline__ uint32_t to_tf32(float x) {
#if defined(__CUDACC__)
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
#else
  const uint32_t u = __float_as_uint(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return u;  // inf and NaN pass through
  return (u + 0x1000u) & 0xffffe000u;
#endif
}

#if defined(__CUDACC__)
#define VK_LDMATRIX(count, trans_suffix, ...)                                                                     \
  asm volatile("ldmatrix.sync.aligned.m8n8.x" #count trans_suffix ".shared.b16 " __VA_ARGS__)
#endif

template <int kCount, bool kTrans = false>
__device__ __forceinline__ void ldmatrix(uint32_t (&r)[kCount], const void* row_address) {
  static_assert(kCount == 1 || kCount == 2 || kCount == 4, "ldmatrix loads 1, 2 or 4 matrices");
#if defined(__CUDACC__)
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row_address));
  if constexpr (kCount == 1) {
    if constexpr (kTrans) VK_LDMATRIX(1, ".trans", "{%0}, [%1];\n" : "=r"(r[0]) : "r"(addr));
    else VK_LDMATRIX(1, "", "{%0}, [%1];\n" : "=r"(r[0]) : "r"(addr));
  } else if constexpr (kCount == 2) {
    if constexpr (kTrans) VK_LDMATRIX(2, ".trans", "{%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
    else VK_LDMATRIX(2, "", "{%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
  } else {
    if constexpr (kTrans)
      VK_LDMATRIX(4, ".trans", "{%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
    else
      VK_LDMATRIX(4, "", "{%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
  }
#else
  ::vk::emu::ldmatrix(r, kCount, kTrans, row_address, __FILE__, __LINE__);
#endif
}

__device__ __forceinline__ void cp_async_16(void* shared_dst, const void* global_src, int src_bytes = 16) {
#if defined(__CUDACC__)
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(shared_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(global_src), "r"(src_bytes));
#else
  ::vk::emu::async_copy(shared_dst, global_src, 16, src_bytes, __FILE__, __LINE__);
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDACC__)
  asm volatile("cp.async.commit_group;\n" ::);
#else
  ::vk::emu::async_copy_commit();
#endif
}

template <int kPendingGroupsLeft>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDACC__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPendingGroupsLeft));
#else
  ::vk::emu::async_copy_wait(kPendingGroupsLeft);
#endif
}

}  // namespace VK_KERNEL_NS
}  // namespace vk
