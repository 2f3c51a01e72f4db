// The SIMT emulator's global-memory sector accounting: plain C++ (no CUDA types), so
// vggkern.cpp can report it beside the CUDA runtime's headers.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace vk {
namespace emu {

// Global-memory traffic of the warp-wide instructions whose lanes' addresses the
// emulator sees together: the kernels' ld_global / st_global (csrc/kernels/simt.cuh) and
// the global side of cp.async (tensor_core.cuh). A warp's lanes meet at the k-th call of
// one call site since the last __syncthreads() (a lane whose access is predicated off
// still calls, so the lanes keep meeting at the same calls). The memory system moves
// global memory in 32-byte sectors: an instruction costs as many sectors as its lanes'
// bytes touch, at least ceil(distinct bytes / 32) ("ideal": the same bytes packed and
// aligned). A warp whose lanes read consecutive elements has sectors == ideal; a
// stride of 2 elements doubles the sectors. What it counts is the L1-to-L2 request
// traffic with no cache hits: an upper bound on DRAM traffic, not a measurement of it.
struct GlobalSectorCounts {
  uint64_t instructions = 0;  // warp-wide instructions with at least one active lane
  uint64_t bytes = 0;         // distinct bytes the active lanes accessed
  uint64_t ideal = 0;         // sectors those bytes need at least, per instruction
  uint64_t sectors = 0;       // sectors the addresses the kernel used touch
  void add(const GlobalSectorCounts& o) {
    instructions += o.instructions, bytes += o.bytes, ideal += o.ideal, sectors += o.sectors;
  }
};
enum class GlobalPath { load, store, cp_async };
struct GlobalSectorStats {
  GlobalSectorCounts load, store, cp_async;
  GlobalSectorCounts& operator[](GlobalPath p) {
    return p == GlobalPath::load ? load : p == GlobalPath::store ? store : cp_async;
  }
};
// The counts of one warp-wide instruction: access i of bytes[i] at byte address
// addresses[i], i < n (the active lanes only; none: all zero).
GlobalSectorCounts global_access_counts(const uintptr_t* addresses, const int* bytes, int n);
// Totals by kernel name (the launch's), since the last reset; a launch adds its counts
// when it ends.
void add_global_sector_stats(const char* kernel, const GlobalSectorStats& s);
std::map<std::string, GlobalSectorStats> global_sector_stats();
void reset_global_sector_stats();

}  // namespace emu
}  // namespace vk
