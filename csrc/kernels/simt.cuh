// The one header a kernel file includes to get the CUDA device API.
//
// Under nvcc it is CUDA itself (runtime, fp16, bf16). Under a host compiler it is the
// SIMT emulator (csrc/emu/simt_emu.h), which runs the same source on the CPU. The
// shared-memory macros below are the one place kernel source differs from plain CUDA:
//   VK_SHARED(float, tile, [32][33]);   // __shared__ float tile[32][33];
//   VK_DYNAMIC_SHARED(float, smem);     // extern __shared__ float smem[];
// Kernels live in namespace vk::VK_KERNEL_NS, `gpu` under nvcc and `emu` otherwise,
// so the two compilations of one kernel never share a symbol in the same library.
#pragma once

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define VK_KERNEL_NS gpu
// Static shared arrays start 16-byte aligned, as the emulator places them, whatever T's
// own alignment: cp.async and ldmatrix rows need 16 bytes.
#define VK_SHARED(T, name, dims) __shared__ __align__(16) T name dims
// Dynamic shared memory starts 1024-byte aligned: wgmma's swizzled operands are laid out
// relative to the buffer and read by absolute address bits (the emulator's arena too).
#define VK_DYNAMIC_SHARED(T, name)                                     \
  extern __shared__ __align__(1024) unsigned char vk_dynamic_smem_[]; \
  T* name = reinterpret_cast<T*>(vk_dynamic_smem_)
#else
#include "../emu/simt_emu.h"

#define VK_KERNEL_NS emu
#endif

// The emulator's bodies of the wrappers below (and tensor_core.cuh's) take their
// caller's source line as defaulted arguments, so that its error messages (a race, a
// misaligned row) name the kernel's line, not the wrapper's; under nvcc there are none.
#if defined(__CUDACC__)
#define VK_CALL_SITE
#else
#define VK_CALL_SITE , const char *vk_file = __builtin_FILE(), int vk_line = __builtin_LINE()
#endif

namespace vk {
namespace VK_KERNEL_NS {

// ld_shared / st_shared: a plain shared-memory load or store of one T (4, 8 or 16
// bytes). On the GPU only the access; under the emulator it is also counted for bank
// conflicts (bank_stats.h). A warp's lanes meet by call order, so every lane of the warp
// makes the same calls (compute a predicate, do not branch around them).
template <class T>
__device__ __forceinline__ T ld_shared(const T* p VK_CALL_SITE) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8 || sizeof(T) == 16, "ld_shared: a 4-, 8- or 16-byte type");
#if !defined(__CUDACC__)
  ::vk::emu::note_shared_access(::vk::emu::SharedPath::load, p, sizeof(T), vk_file, vk_line);
#endif
  return *p;
}
template <class T>
__device__ __forceinline__ void st_shared(T* p, const T& v VK_CALL_SITE) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8 || sizeof(T) == 16, "st_shared: a 4-, 8- or 16-byte type");
#if !defined(__CUDACC__)
  ::vk::emu::note_shared_access(::vk::emu::SharedPath::store, p, sizeof(T), vk_file, vk_line);
#endif
  *p = v;
}

// ld_global / st_global: a global-memory load or store of one T. On the GPU only the
// access (`active` false: none, and the load gives T{}, zero); under the emulator it is
// also counted for 32-byte sectors per warp-wide instruction (global_stats.h). A warp's
// lanes meet at the k-th call of each call site since the last __syncthreads(), so a
// lane whose access is conditional passes the condition as `active` rather than
// branching around the call (a loop with fewer trips for some lanes is fine).
template <class T>
__device__ __forceinline__ T ld_global(const T* p, bool active = true VK_CALL_SITE) {
#if !defined(__CUDACC__)
  ::vk::emu::note_global_access(::vk::emu::GlobalPath::load, p, sizeof(T), active, vk_file, vk_line);
#endif
  return active ? *p : T{};
}
// ld_global_cg: ld_global from L2 (ld.global.cg), past this SM's L1, for what another
// block wrote during the launch (stream-K's partial sums, read once their writers counted
// themselves in: an L1 line cached before would be stale). The emulator counts it as a load.
template <class T>
__device__ __forceinline__ T ld_global_cg(const T* p, bool active = true VK_CALL_SITE) {
#if defined(__CUDACC__)
  return active ? __ldcg(p) : T{};
#else
  ::vk::emu::note_global_access(::vk::emu::GlobalPath::load, p, sizeof(T), active, vk_file, vk_line);
  return active ? *p : T{};
#endif
}
template <class T>
__device__ __forceinline__ void st_global(T* p, const T& v, bool active = true VK_CALL_SITE) {
#if !defined(__CUDACC__)
  ::vk::emu::note_global_access(::vk::emu::GlobalPath::store, p, sizeof(T), active, vk_file, vk_line);
#endif
  if (active) *p = v;
}

// Named barriers (PTX bar.sync / bar.arrive): barrier `id` (1..15; 0 is __syncthreads()'s)
// of `threads` threads (a multiple of 32; whole warps take part). bar_sync waits until
// `threads` have arrived; bar_arrive counts this warp's arrival and goes on. Together they
// pass stages between warps without stopping the whole block (a producer warp arrives
// once its copies landed, the consumers sync): the arrivals' shared-memory writes before
// are ordered before the waiters' accesses after, and the emulator checks exactly that
// (per-warp clocks: csrc/emu/runtime.cpp, "races on shared memory").
__device__ __forceinline__ void bar_sync(int id, int threads VK_CALL_SITE) {
#if defined(__CUDACC__)
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
#else
  ::vk::emu::named_barrier(id, threads, true, vk_file, vk_line);
#endif
}
__device__ __forceinline__ void bar_arrive(int id, int threads VK_CALL_SITE) {
#if defined(__CUDACC__)
  asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(threads) : "memory");
#else
  ::vk::emu::named_barrier(id, threads, false, vk_file, vk_line);
#endif
}

}  // namespace VK_KERNEL_NS
}  // namespace vk
