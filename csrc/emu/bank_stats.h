// The SIMT emulator's shared-memory bank accounting: plain C++ (no CUDA types), so
// vggkern.cpp can report it beside the CUDA runtime's headers.
#pragma once

#include <cstdint>

namespace vk {
namespace emu {

// Shared-memory bank traffic of the access paths whose warp-wide addresses the emulator
// sees together: ldmatrix (each 8x8 matrix, 8 rows of 16 bytes, is one phase), cp.async
// (the lanes of a warp's k-th cp.async), and the plain loads and stores kernels make
// through ld_shared / st_shared (csrc/kernels/simt.cuh; the lanes of a warp's k-th call).
// 16-byte accesses go 8 lanes per phase, 8-byte 16, 4-byte 32, as vector accesses do. sm_90 shared memory has 32
// banks of 4 bytes: a phase costs as many wavefronts as the most distinct 4-byte
// words that any one bank holds among its addresses. A layout without bank conflicts
// has wavefronts == ideal (one per phase). Counted over every launch, all threads.
struct SharedBankCounts {
  uint64_t instructions = 0;  // warp-wide instructions
  uint64_t ideal = 0;         // wavefronts without conflicts
  uint64_t wavefronts = 0;    // wavefronts with the addresses the kernel used
};
struct SharedBankStats {
  SharedBankCounts ldmatrix, cp_async, load, store;
};
SharedBankStats shared_bank_stats();
void reset_shared_bank_stats();
enum class SharedPath { ldmatrix, cp_async, load, store };
// One warp-wide instruction: `n` accesses, access i of bytes[i] at byte address
// addresses[i], split into phases of `per_phase` consecutive accesses.
void record_shared_access(SharedPath path, const uintptr_t* addresses, const int* bytes, int n, int per_phase);

}  // namespace emu
}  // namespace vk
