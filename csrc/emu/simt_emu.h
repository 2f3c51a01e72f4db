// The CUDA device API as the emulator provides it to a kernel compiled by the host
// compiler: threadIdx/blockIdx/blockDim/gridDim, __syncthreads and its counting
// forms, warp collectives, shared memory, atomics, and the qualifiers. Kernel files
// never include this directly: they include kernels/simt.cuh, which picks CUDA's own
// headers under nvcc and this file otherwise.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "runtime.h"

// Kernel source carries `#pragma unroll` for nvcc; the host compiler need not warn.
#pragma GCC diagnostic ignored "-Wunknown-pragmas"

namespace vk {
namespace emu {

struct ThreadView {
  uint3 thread_idx;
  unsigned linear;  // x + y*Bx + z*Bx*By: warp = linear / 32, lane = linear % 32
};
struct BlockView {
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};

// The fiber running now and its block (per OS thread: each worker runs one block).
extern __thread ThreadView* t_thread;
extern __thread BlockView* t_block;

// Reports an error from inside a kernel: the launch fails with this message. Never returns.
[[noreturn]] void kernel_fail(const std::string& what, const char* file, int line);

int block_barrier(int predicate, const char* file, int line);  // returns the block's count
// A named barrier (bar.sync, wait true, or bar.arrive: barrier `id` 1..15 of `threads`
// threads, a multiple of 32): every non-exited lane of the warp takes part (the warp
// arrives as 32 threads); an instance completes once `threads` have arrived, and orders
// its arrivals' earlier shared-memory accesses before the accesses that its waiters
// (bar.sync) make after it (the PTX memory model: arrive releases, sync acquires).
void named_barrier(int id, int threads, bool wait, const char* file, int line);

enum class Collective : int { shfl = 1, vote = 2, syncwarp = 3, mma = 4, ldmatrix = 5, wgmma = 6, named_barrier = 7 };
constexpr size_t kExchangeBytes = 64;  // what one lane contributes to a collective, at most
struct Exchange {
  const unsigned char (*values)[kExchangeBytes];  // each lane's contribution, by lane
  unsigned arrived;                   // lanes that took part (exited lanes did not)
  unsigned predicates;                // lanes whose predicate was true
  void* handle;
  // Room for a result the whole warp shares, computed by the first lane to need it
  // (*shared_ready false) and read by the others: a collective's work done once.
  unsigned char (*shared_result)[kExchangeBytes];
  bool* shared_ready;
};
Exchange warp_exchange(Collective kind, unsigned mask, const void* value, size_t bytes, int predicate,
                       const char* file, int line);
void warp_exchange_done(void* handle);

void* shared_static(const void* tag, size_t bytes, size_t align, const char* file, int line);
void* shared_dynamic();

// cp.async: copies `bytes` (4, 8, 16) from global to shared memory, the first
// `src_bytes` from src and zeros after; lands when a wait covers its group.
void async_copy(void* dst, const void* src, int bytes, int src_bytes, const char* file, int line);
void async_copy_commit();
void async_copy_wait(int pending_groups_left);  // negative: all
bool in_shared(const void* p, size_t bytes);     // inside this block's shared memory?
// A plain shared-memory load or store of `bytes` at p, for bank accounting (bank_stats.h);
// the kernels' ld_shared / st_shared call it.
void note_shared_access(SharedPath path, const void* p, int bytes, const char* file, int line);
// A global-memory load or store of `bytes` at p (or, active false, a lane's call whose
// access is predicated off), for sector accounting (global_stats.h); the kernels'
// ld_global / st_global call it.
void note_global_access(GlobalPath path, const void* p, int bytes, bool active, const char* file, int line);
// A read of shared memory the emulator would not see otherwise (ldmatrix's rows), for
// race detection (runtime.cpp: two threads' accesses to a word with no barrier between).
void note_shared_read(const void* p, size_t bytes, const char* file, int line);

// The block-shared address of p (its offset in the block's shared memory: what
// __cvta_generic_to_shared gives on the GPU), and the memory at such an address; both
// fail outside the block's shared memory.
uint32_t shared_address(const void* p, const char* file, int line);
const unsigned char* shared_at(uint32_t address, size_t bytes, const char* file, int line);
// The async proxy (wgmma) and the generic one (st_shared, cp.async): a thread's writes
// reach the async proxy after its fence.proxy.async (fence_proxy_async) and a barrier.
// The emulator tracks, per 16 bytes of shared memory, the writes (cp.async as it lands,
// st_shared) whose writer has not fenced since; async_proxy_read fails on such bytes.
// (Plain C++ stores to shared memory are not seen.)
void async_proxy_fence();  // fence.proxy.async (named apart from the kernels' fence_proxy_async)
void async_proxy_read(uint32_t address, size_t bytes, const char* file, int line);

// Asynchronous operations of one thread (wgmma): the record (at most kAsyncOpBytes) is
// queued in the open group; commit closes the group; wait(k) runs, in issue order, every
// queued operation but those of the k newest groups (negative: all).
constexpr size_t kAsyncOpBytes = 96;
using AsyncOpFn = void (*)(const void* record);
void async_op_enqueue(AsyncOpFn run, const void* record, size_t bytes, const char* file, int line);
void async_op_commit();
void async_op_wait(int pending_groups_left);

// Warpgroup-wide instructions (wgmma's fence, mma_async, commit_group, wait_group, all
// .sync.aligned): every thread of a warpgroup (4 aligned warps, 128 threads) must execute
// the same sequence of them with the same operands. Each thread reports its next one as
// a name and a record (operands, compared bytewise, at most kWarpgroupRecordBytes); a
// thread whose k-th differs from its warpgroup's k-th fails the launch there, and a
// block that ends with some threads short of the others fails it at the end.
constexpr size_t kWarpgroupRecordBytes = 48;
void warpgroup_instruction(const char* name, const void* record, size_t bytes, const char* file, int line);

// wgmma's register protocol, per thread and reset per block (tensor_core_emu.cpp checks
// it): the wgmma_fence count, and per accumulator array the queued operations on it and
// the hash its contents must have when the next wgmma starts (set by a wgmma that ran
// and by a fence; `known` false until either happened).
struct WgmmaAccumulator {
  const float* d;
  int floats;
  int pending;
  bool known;
  uint64_t hash;
};
struct WgmmaRegisters {
  int fences = 0;
  std::vector<WgmmaAccumulator> accumulators;
};
WgmmaRegisters& wgmma_registers();  // the current thread's

enum class ShflMode { idx, up, down, bfly };

template <class T>
T shfl(ShflMode mode, const char* file, int line, unsigned mask, T var, int arg, int width = 32) {
  static_assert(sizeof(T) <= 16, "warp shuffle of a type wider than 16 bytes");
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    kernel_fail("warp shuffle width must be a power of two in [1, 32], got " + std::to_string(width), file, line);
  const int lane = static_cast<int>(t_thread->linear & 31u);
  const int base = lane & ~(width - 1);
  int src = lane;
  switch (mode) {
    case ShflMode::idx: src = base + (arg & (width - 1)); break;
    case ShflMode::up: src = (lane - base) >= arg ? lane - arg : lane; break;
    case ShflMode::down: src = (lane - base) + arg < width ? lane + arg : lane; break;
    case ShflMode::bfly: src = lane ^ arg; if (src >= base + width) src = lane; break;
  }
  const Exchange ex = warp_exchange(Collective::shfl, mask, &var, sizeof(T), 0, file, line);
  if (!((ex.arrived >> src) & 1u)) {
    warp_exchange_done(ex.handle);
    kernel_fail("warp shuffle reads lane " + std::to_string(src) + ", which is not in the mask or has exited",
                file, line);
  }
  T out;
  std::memcpy(&out, ex.values[src], sizeof(T));
  warp_exchange_done(ex.handle);
  return out;
}

inline unsigned vote(unsigned mask, int predicate, const char* file, int line) {
  const Exchange ex = warp_exchange(Collective::vote, mask, nullptr, 0, predicate != 0, file, line);
  const unsigned result = ex.predicates & mask;
  warp_exchange_done(ex.handle);
  return result;
}

// __syncwarp() and __syncwarp(mask), with the call site attached.
struct SyncwarpAt {
  const char* file;
  int line;
  void operator()(unsigned mask = 0xffffffffu) const {
    const Exchange ex = warp_exchange(Collective::syncwarp, mask, nullptr, 0, 0, file, line);
    warp_exchange_done(ex.handle);
  }
};

template <class T>
inline T atomic_rmw_cas(T* address, T (*op)(T, T), T value) {
  T old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(address, &old, op(old, value), true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}

template <class F, class U>
inline F atomic_float_rmw(F* address, F value, F (*op)(F, F)) {
  static_assert(sizeof(F) == sizeof(U), "bit width");
  U* bits = reinterpret_cast<U*>(address);
  U old = __atomic_load_n(bits, __ATOMIC_RELAXED);
  for (;;) {
    F old_f;
    std::memcpy(&old_f, &old, sizeof(F));
    const F new_f = op(old_f, value);
    U new_u;
    std::memcpy(&new_u, &new_f, sizeof(F));
    if (__atomic_compare_exchange_n(bits, &old, new_u, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old_f;
  }
}

}  // namespace emu
}  // namespace vk

// ---- qualifiers ---------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __constant__

// ---- built-in variables -------------------------------------------------------------
#define threadIdx (::vk::emu::t_thread->thread_idx)
#define blockIdx (::vk::emu::t_block->block_idx)
#define blockDim (::vk::emu::t_block->block_dim)
#define gridDim (::vk::emu::t_block->grid_dim)
constexpr int warpSize = 32;

// ---- barriers and warp collectives --------------------------------------------------
#define __syncthreads() ((void)::vk::emu::block_barrier(1, __FILE__, __LINE__))
#define __syncthreads_count(p) (::vk::emu::block_barrier((p) != 0, __FILE__, __LINE__))
#define __syncthreads_and(p) \
  (::vk::emu::block_barrier((p) != 0, __FILE__, __LINE__) == static_cast<int>(blockDim.x * blockDim.y * blockDim.z))
#define __syncthreads_or(p) (::vk::emu::block_barrier((p) != 0, __FILE__, __LINE__) > 0)
#define __syncwarp(...) ::vk::emu::SyncwarpAt{__FILE__, __LINE__}(__VA_ARGS__)
#define __shfl_sync(...) ::vk::emu::shfl(::vk::emu::ShflMode::idx, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::vk::emu::shfl(::vk::emu::ShflMode::up, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::vk::emu::shfl(::vk::emu::ShflMode::down, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::vk::emu::shfl(::vk::emu::ShflMode::bfly, __FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, p) ::vk::emu::vote((mask), (p), __FILE__, __LINE__)
#define __any_sync(mask, p) (::vk::emu::vote((mask), (p), __FILE__, __LINE__) != 0u)
#define __all_sync(mask, p) (::vk::emu::vote((mask), (p), __FILE__, __LINE__) == (mask))
// Blocks run on several OS threads: a fence orders this thread's memory accesses for the
// others (stream-K's partial sums before the atomic that announces them).
#define __threadfence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __threadfence_block() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __trap() ::vk::emu::kernel_fail("__trap() called", __FILE__, __LINE__)

// ---- shared memory ------------------------------------------------------------------
// VK_SHARED(float, tile, [32][33]);  declares block-shared `float tile[32][33]`.
// VK_DYNAMIC_SHARED(float, smem);    `float* smem` = the launch's dynamic shared memory.
#define VK_SHARED(T, name, dims)                                                          \
  static const char vk_shared_tag_##name = 0;                                             \
  T(&name) dims = *static_cast<T(*) dims>(::vk::emu::shared_static(                      \
      &vk_shared_tag_##name, sizeof(T dims), alignof(T dims), __FILE__, __LINE__))
#define VK_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::vk::emu::shared_dynamic())

// ---- global memory loads ------------------------------------------------------------
template <class T>
inline T __ldg(const T* p) { return *p; }

// ---- atomics (real atomics: blocks run on several OS threads) -----------------------
#define VK_EMU_INT_ATOMICS(T)                                                                            \
  inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }                   \
  inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }                   \
  inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); }                   \
  inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }                     \
  inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); }                   \
  inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }                 \
  inline T atomicMax(T* a, T v) {                                                                        \
    return ::vk::emu::atomic_rmw_cas<T>(a, [](T x, T y) { return x > y ? x : y; }, v);                   \
  }                                                                                                      \
  inline T atomicMin(T* a, T v) {                                                                        \
    return ::vk::emu::atomic_rmw_cas<T>(a, [](T x, T y) { return x < y ? x : y; }, v);                   \
  }                                                                                                      \
  inline T atomicCAS(T* a, T compare, T v) {                                                             \
    __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);              \
    return compare;                                                                                      \
  }
VK_EMU_INT_ATOMICS(int)
VK_EMU_INT_ATOMICS(unsigned)
VK_EMU_INT_ATOMICS(unsigned long long)
#undef VK_EMU_INT_ATOMICS

inline float atomicAdd(float* a, float v) {
  return ::vk::emu::atomic_float_rmw<float, uint32_t>(a, v, [](float x, float y) { return x + y; });
}
inline double atomicAdd(double* a, double v) {
  return ::vk::emu::atomic_float_rmw<double, uint64_t>(a, v, [](double x, double y) { return x + y; });
}
inline float atomicExch(float* a, float v) {
  return ::vk::emu::atomic_float_rmw<float, uint32_t>(a, v, [](float, float y) { return y; });
}

// ---- CUDA's overloaded min/max for device code --------------------------------------
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
