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
// cp.async through L1 (.ca: cp_async_16_l1) against a model of one block's L1: the bytes
// those copies read, and the misses, the 32-byte sectors they touch that are not among
// the last VGGKERN_EMU_L1_KIB KiB (default 32) of distinct sectors the block's own .ca
// copies touched (least recently used first out; per block, so no other block's traffic
// evicts and none shares lines: a model of the block's share of an SM's L1, not of the
// GPU's cache). 32 x misses is what such copies would read from L2; .cg copies bypass the
// model (all from L2).
struct L1Counts {
  uint64_t bytes = 0, misses = 0;
  void add(const L1Counts& o) { bytes += o.bytes, misses += o.misses; }
};
enum class GlobalPath { load, store, cp_async };
struct GlobalSectorStats {
  GlobalSectorCounts load, store, cp_async;
  L1Counts l1;
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
