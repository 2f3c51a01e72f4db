// The emulator's bodies for kernels/tma.cuh: mbarriers (PTX mbarrier.*) and the tensor
// memory accelerator's loads (cp.async.bulk.tensor, tile and im2col modes) from a tensor
// map, following the PTX ISA ("Tensors", "mbarrier") and the driver API's
// cuTensorMapEncodeTiled / cuTensorMapEncodeIm2col. What it models, and checks:
//   - an mbarrier (a 64-bit word of shared memory) has an expected arrival count, the
//     arrivals pending in the current phase and a transaction count (bytes expected less
//     bytes landed). A phase completes when no arrival is pending and the transaction count
//     is zero; then the next phase begins with the full count. mbarrier_wait(parity) returns
//     once the phase of that parity has completed (parity 1 right after init: "the phase
//     before the first", as on the GPU), parking the thread until then. Arrivals release,
//     a completed wait acquires (per-warp clocks, as named barriers: runtime.cpp), so a
//     consumer that reads a stage without waiting for its barrier is reported as a race.
//   - a tensor load copies its whole box at issue (the bytes are in shared memory from
//     then on; the GPU may land them any time before the phase completes), checked as a
//     write by the issuing thread (so refilling a stage an unwaited reader still reads is
//     a race), out-of-bound elements filled with zeros, and completes its bytes on the
//     mbarrier. Shared layout: the box's rows (its innermost dimension: channels_per_pixel
//     elements in im2col mode) one after another, 16-byte chunks swizzled by the shared
//     address bits (64-byte swizzle: bits 4-5 ^= bits 7-8, wgmma's pattern).
//   - a tensor store (cp.async.bulk.tensor, shared to global, tile mode) is queued by its
//     issuing thread and run at the bulk wait that covers its group: it reads the box from
//     shared memory then (checked as an async-proxy read with the clocks, so a box
//     rewritten before the wait, or written without a barrier before the issue, is a race),
//     and writes the part inside the tensor to global memory. Its writers must have executed
//     fence.proxy.async before the issue; a thread that ends with stores not waited for
//     fails (its block's shared memory goes with it).
//   - misuse fails the launch: an uninitialised or twice-initialised barrier, more arrivals
//     than its count in one phase, a block that ends with bytes still expected, a
//     destination that is not 128-byte aligned (or not aligned to its swizzle pattern),
//     a box start outside the im2col bounding box.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vk {
namespace emu {

// The emulator's tensor map: what cuTensorMapEncode{Tiled,Im2col} are given. Dimensions
// innermost first (NHWC: C, W, H, N).
struct alignas(64) TensorMap {
  enum class Mode : int { tiled, im2col };
  Mode mode;
  int rank;  // 2..5 (im2col: 3..5)
  int elem_bytes;
  const unsigned char* base;
  uint64_t dims[5];
  uint64_t strides[5];  // bytes; strides[0] = elem_bytes
  uint32_t box[5];      // tiled: the box per dimension; im2col: box[0] channels per pixel, box[1] pixels per column
  int lower[3], upper[3];  // im2col: the bounding box's corners per spatial dimension (W, H, D)
  int swizzle;             // 0, 32, 64 or 128 bytes
};

void mbarrier_init(const void* bar, uint32_t count, const char* file, int line);
// mbar_init_fence(): the mbarriers this thread initialised, visible to tensor loads (a load
// completing on one its initialising thread has not fenced since is an error).
void mbarrier_init_fence();
// One arrival; expect_tx > 0: mbarrier.arrive.expect_tx (the bytes are expected first).
void mbarrier_arrive(const void* bar, uint32_t expect_tx, const char* file, int line);
void mbarrier_wait(const void* bar, uint32_t parity, const char* file, int line);
// cp.async.bulk.tensor.{rank}d.shared::cluster.global.{tile,im2col}.mbarrier::complete_tx::bytes:
// coords (rank of them, innermost first), offsets (im2col: one per spatial dimension, W first).
void tensor_load(void* dst, const TensorMap& map, const int32_t* coords, const int32_t* offsets, const void* bar,
                 const char* file, int line);

// cp.async.bulk.tensor.2d.global.shared::cta.tile.bulk_group: the box at coords (2-D tile
// maps) from shared memory laid out as a load leaves it (the swizzle's rows), queued in
// the thread's open bulk group and run at the wait that covers it (see above); commit
// closes the group; wait runs every committed store (wait_group.read 0 and wait_group 0
// alike: the emulator's stores read and write at once).
void tensor_store(const void* src, const TensorMap& map, const int32_t* coords, const char* file, int line);
void tensor_store_commit();
void tensor_store_wait();

// The box of one tensor load, row by row in shared-memory order (row i: map.box[0] *
// elem_bytes bytes at i times that): the byte offset from map.base of the row's element
// 0, and the row's elements [begin, end) that lie inside the tensor (the others are
// zero-filled; begin == end: none). Returns "" or why the load is invalid (a box start
// outside the im2col bounding box): not an exception, which would unwind through the
// emulator's fibers (AddressSanitizer then reports the unwound frames' stale shadow).
// Used by the runtime; touches no memory.
struct BoxRow {
  int64_t offset;
  uint32_t begin, end;
};
std::string tensor_box(const TensorMap& map, const int32_t* coords, const int32_t* offsets, std::vector<BoxRow>* rows);

}  // namespace emu
}  // namespace vk
