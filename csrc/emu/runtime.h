// The SIMT emulator's runtime: runs a CUDA kernel's own source on the CPU.
//
// A launch runs the grid's blocks one after another on each of a few worker threads
// (blocks are independent, as on a GPU). Inside a block every CUDA thread is a fiber
// with its own stack; the block's fibers run in turn on one OS thread, each until it
// reaches a barrier or returns:
//   - __syncthreads() parks the fiber; the last thread of the block to arrive releases
//     all of them. A barrier that the block can never complete (some threads exited,
//     or wait at another barrier) is reported as an error naming the kernel, the block
//     and the source lines: never a hang.
//   - warp collectives (__shfl*_sync, __ballot_sync, __syncwarp, ...) are barriers over
//     the lanes named in the mask, with a per-collective exchange record.
//   - shared memory (static VK_SHARED and dynamic VK_DYNAMIC_SHARED) lives in a
//     per-worker arena, filled with 0xFF bytes (NaN in every float type) at every
//     block start, so reading unwritten shared memory shows up in results.
//   - two threads' accesses to a word of shared memory, one a write, with no barrier
//     between them fail the launch as a race, naming both source lines (runtime.cpp).
// Everything here is plain C++: no torch, no CUDA headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "bank_stats.h"
#include "global_stats.h"
#include "cuda_types.h"

namespace vk {
namespace emu {

// A non-owning reference to a callable, cheaper than std::function on the hot path.
class FunctionRef {
 public:
  template <class F, class = std::enable_if_t<!std::is_same<std::decay_t<F>, FunctionRef>::value>>
  FunctionRef(F& f) : obj_(&f), call_(&invoke<F>) {}  // NOLINT: implicit by design
  void operator()() const { call_(obj_); }

 private:
  template <class F>
  static void invoke(void* obj) { (*static_cast<F*>(obj))(); }
  void* obj_;
  void (*call_)(void*);
};

struct LaunchParams {
  const char* kernel_name;
  dim3 grid;
  dim3 block;
  size_t dynamic_smem_bytes;
};

// Runs `body` once per CUDA thread of the grid. Throws std::runtime_error (message
// starting "vggkern emulator:") on an invalid launch or a kernel error.
void run_grid(const LaunchParams& params, FunctionRef body);

// Limits checked at launch, those of an sm_90 GPU.
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr size_t kMaxSharedBytesPerBlock = 227 * 1024;
constexpr int kWarpSize = 32;

// Number of OS worker threads a launch may use (env VGGKERN_EMU_THREADS, default
// hardware concurrency). Results never depend on it.
int worker_count();

// When a cp.async lands (env VGGKERN_EMU_CP_ASYNC, read per launch). A GPU may land it
// anywhere between its issue and the wait that covers it; the emulator takes one end:
// by default at the wait, which shows a read that comes before the wait (it sees the
// poison); with "eager", at the issue, which shows a copy into a buffer that is still
// being read, e.g. by a wgmma that has not been waited for (wgmma reads at its wait).
// A correct kernel gives the same results both ways.
bool cp_async_lands_eagerly();

}  // namespace emu
}  // namespace vk
