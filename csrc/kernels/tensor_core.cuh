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
//   wgmma_m64nN<f16|bf16|tf32, N>(d, desc_a, desc_b), N = 128 or 256: a warpgroup (4
//     aligned warps, 128 threads) computes D(64xN) += A(64xk) * B(kxN) for one 32-byte K
//     step (k = 16 halves: m64nNk16, or 8 floats: m64nNk8.tf32), both read from shared
//     memory through 64-bit matrix descriptors (smem_desc_k_sw64), fp32 accumulators in
//     registers. tf32 reads the operands' fp32 bit patterns as they are in shared memory:
//     the PTX ISA (wgmma, "Precision and rounding") says the low 13 bits of a .tf32 input
//     are truncated before the multiply (round toward zero), which the emulator models
//     (benchmarks/wgmma_probe.py checks it on hardware). Warp w of the group, lane (g, t), holds
//     in d[4j + i] D[16w + g + 8*(i>>1)][8j + 2t + (i&1)], the mma.sync C layout repeated
//     over N/8 n8 tiles. Asynchronous: wgmma_fence() before the first (and after any other write to
//     d), wgmma_commit() closes a group, wgmma_wait<k>() waits for all but the k newest;
//     d and the shared operands must not be touched until then, and wgmma_pin(d) on both
//     sides of that window keeps the compiler from moving d's uses into it. Shared memory written by
//     ordinary stores or cp.async reaches wgmma after fence_proxy_async() and a barrier.
//     sm_90a only (the 'a' in TORCH_CUDA_ARCH_LIST=9.0a); on other targets it traps. The
//     emulator queues the operation per thread and runs it at the wait that covers it,
//     reading shared memory then, as the GPU may; it also fails a read of bytes whose
//     writer (cp.async, st_shared) has not executed fence_proxy_async() since, threads of
//     a warpgroup that disagree on these four instructions or their operands, and
//     accumulator writes that break wgmma_fence()'s rule (tensor_core_emu.cpp).
//   smem_desc_k_sw64(p, sbo): the descriptor of a K-major operand stored as rows of 64
//     bytes with the 64-byte swizzle (16-byte chunk c of row r at chunk c ^ ((r/2) % 4),
//     the XOR of address bits 4-5 with bits 7-8), 8-row groups `sbo` bytes apart; p is
//     the operand's row 0 plus the K offset inside the row (0 or 32 bytes: a K step).
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

#if !defined(__CUDACC__)
constexpr ::vk::emu::MmaInput emu_input(MmaType t) {
  return t == MmaType::f16 ? ::vk::emu::MmaInput::f16 : t == MmaType::bf16 ? ::vk::emu::MmaInput::bf16
                                                                           : ::vk::emu::MmaInput::tf32;
}
#endif

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
  ::vk::emu::mma_sync(emu_input(kType), d, a, b, c, __FILE__, __LINE__);
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

// x rounded to TF32 (to_tf32's rule), as a float: the nearest value with 10 mantissa bits.
__device__ __forceinline__ float round_tf32(float x) { return __uint_as_float(to_tf32(x)); }

#if defined(__CUDACC__)
#define VK_LDMATRIX(count, trans_suffix, ...)                                                                     \
  asm volatile("ldmatrix.sync.aligned.m8n8.x" #count trans_suffix ".shared.b16 " __VA_ARGS__)
#endif

template <int kCount, bool kTrans = false>
__device__ __forceinline__ void ldmatrix(uint32_t (&r)[kCount], const void* row_address VK_CALL_SITE) {
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
  ::vk::emu::ldmatrix(r, kCount, kTrans, row_address, vk_file, vk_line);
#endif
}

__device__ __forceinline__ void cp_async_16(void* shared_dst, const void* global_src, int src_bytes = 16 VK_CALL_SITE) {
#if defined(__CUDACC__)
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(shared_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(global_src), "r"(src_bytes));
#else
  ::vk::emu::async_copy(shared_dst, global_src, 16, src_bytes, vk_file, vk_line);
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
  // "memory": the copies' shared-memory writes become visible to this thread here, so no
  // shared load may be moved above the wait (the barrier or proxy fence after every wait
  // in our kernels already keeps them below; this keeps it so for any future reader).
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPendingGroupsLeft) : "memory");
#else
  ::vk::emu::async_copy_wait(kPendingGroupsLeft);
#endif
}

// ---- wgmma (sm_90a) ---------------------------------------------------------------------

// Shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"): start address,
// leading and stride byte offsets in 16-byte units at bits 0, 16 and 32, swizzle mode at
// bits 62-63 (2: 64-byte). K-major swizzled operands ignore the leading offset (1 here).
__device__ __forceinline__ uint64_t smem_desc_k_sw64(const void* p, uint32_t sbo_bytes) {
#if defined(__CUDACC__)
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
#else
  const uint32_t addr = ::vk::emu::shared_address(p, __FILE__, __LINE__);
#endif
  return uint64_t((addr & 0x3ffffu) >> 4) | (uint64_t(1) << 16) | (uint64_t((sbo_bytes & 0x3ffffu) >> 4) << 32) |
         (uint64_t(2) << 62);
}

__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#elif !defined(__CUDACC__)
  ::vk::emu::wgmma_fence(__FILE__, __LINE__);
#endif
}

__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#elif !defined(__CUDACC__)
  ::vk::emu::wgmma_commit_group(__FILE__, __LINE__);
#endif
}

template <int kPendingGroupsLeft>
__device__ __forceinline__ void wgmma_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPendingGroupsLeft) : "memory");
#elif !defined(__CUDACC__)
  ::vk::emu::wgmma_wait_group(kPendingGroupsLeft, __FILE__, __LINE__);
#endif
}

// Pins kCount accumulators around wgmma's asynchronous window: an empty asm that reads
// and writes each register. The compiler sees wgmma write d when the instruction issues,
// and wgmma_fence()/wgmma_wait() name no registers, so without it the compiler could move
// a read or write of d (the epilogue's, a register copy) across them, into the window in
// which the tensor cores still write d. Called on every accumulator before wgmma_fence()
// and after each wgmma_wait() (CUTLASS's warpgroup_fence_operand does the same). It
// emits no instruction: the SASS is unchanged (benchmarks/sass_loop.py). The emulator
// runs wgmma at the wait in program order: nothing to pin there.
template <int kCount>
__device__ __forceinline__ void wgmma_pin(float* d) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#pragma unroll
  for (int i = 0; i < kCount; ++i) asm volatile("" : "+f"(d[i])::"memory");
#else
  (void)d;
#endif
}

// Orders this thread's generic-proxy writes to shared memory (stores, cp.async after its
// wait) before later async-proxy reads (wgmma, tensor stores); a barrier then publishes
// them. An sm_90 instruction (not sm_90a's alone, unlike wgmma): emitted wherever the
// tensor loads' and stores' own wrappers are (tma.cuh).
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#elif !defined(__CUDACC__)
  ::vk::emu::async_proxy_fence();  // the emulator checks wgmma's reads against it
#endif
}

#define VK_D4(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define VK_D16(i) VK_D4(i), VK_D4(i + 4), VK_D4(i + 8), VK_D4(i + 12)
// One wgmma with 64 (N = 128) or 128 (N = 256) accumulators; `shape_types` is the
// instruction's shape and types, `imm` its immediates after scale-d: scale-a and scale-b
// (1: not negated), and for f16/bf16 also trans-a and trans-b (0: K-major).
#define VK_WGMMA_N128(shape_types, imm)                                                                      \
  asm volatile(                                                                                              \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                           \
      "wgmma.mma_async.sync.aligned." shape_types " "                                                        \
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                                              \
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"                                     \
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"                                     \
      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "                                   \
      "%64, %65, p, " imm ";\n}\n"                                                                           \
      : VK_D16(0), VK_D16(16), VK_D16(32), VK_D16(48)                                                        \
      : "l"(desc_a), "l"(desc_b), "r"(scale_d))
#define VK_WGMMA_N256(shape_types, imm)                                                                      \
  asm volatile(                                                                                              \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                                                          \
      "wgmma.mma_async.sync.aligned." shape_types " "                                                        \
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                                              \
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"                                     \
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"                                     \
      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"                                     \
      "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"                                     \
      "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"                                     \
      "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,"                         \
      "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, "                   \
      "%128, %129, p, " imm ";\n}\n"                                                                         \
      : VK_D16(0), VK_D16(16), VK_D16(32), VK_D16(48), VK_D16(64), VK_D16(80), VK_D16(96), VK_D16(112)       \
      : "l"(desc_a), "l"(desc_b), "r"(scale_d))

// D = A * B + (scale_d ? D : 0) for one warpgroup and one 32-byte K step (k16 for
// f16/bf16, k8 for tf32), N = 128 or 256 (d[4j + i], j < N/8); both operands K-major (no
// transpose: tf32 has none).
template <MmaType kType, int kN>
__device__ __forceinline__ void wgmma_m64nN(float (&d)[kN / 2], uint64_t desc_a, uint64_t desc_b,
                                            int scale_d = 1 VK_CALL_SITE) {
  static_assert(kN == 128 || kN == 256, "N = 128 or 256");
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (kN == 128) {
    if constexpr (kType == MmaType::f16) VK_WGMMA_N128("m64n128k16.f32.f16.f16", "1, 1, 0, 0");
    else if constexpr (kType == MmaType::bf16) VK_WGMMA_N128("m64n128k16.f32.bf16.bf16", "1, 1, 0, 0");
    else VK_WGMMA_N128("m64n128k8.f32.tf32.tf32", "1, 1");
  } else {
    if constexpr (kType == MmaType::f16) VK_WGMMA_N256("m64n256k16.f32.f16.f16", "1, 1, 0, 0");
    else if constexpr (kType == MmaType::bf16) VK_WGMMA_N256("m64n256k16.f32.bf16.bf16", "1, 1, 0, 0");
    else VK_WGMMA_N256("m64n256k8.f32.tf32.tf32", "1, 1");
  }
#elif defined(__CUDACC__)
  (void)d, (void)desc_a, (void)desc_b, (void)scale_d;
  __trap();  // built without sm_90a: the plan never picks a wgmma tile (args.wgmma)
#else
  ::vk::emu::wgmma_async(emu_input(kType), d, kN, desc_a, desc_b, scale_d, vk_file, vk_line);
#endif
}

#undef VK_WGMMA_N256
#undef VK_WGMMA_N128
#undef VK_D16
#undef VK_D4

}  // namespace VK_KERNEL_NS
}  // namespace vk
