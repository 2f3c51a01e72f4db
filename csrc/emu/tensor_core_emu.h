// The emulator's bodies for the tensor-core wrappers of kernels/tensor_core.cuh:
// mma.sync and ldmatrix as warp collectives, wgmma as per-thread queued operations, all
// following the PTX ISA's documented fragment layouts (which lane's register holds which
// matrix element) and, for wgmma, its shared-memory matrix descriptors.
#pragma once

#include <cstdint>

namespace vk {
namespace emu {

enum class MmaInput { f16, bf16, tf32 };

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32 (a: 4 regs, b: 2)
// and mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (a: 4 regs, b: 2).
// D = A*B + C; the products are exact and the sum is rounded to fp32 once.
void mma_sync(MmaInput type, float* d, const uint32_t* a, const uint32_t* b, const float* c, const char* file,
              int line);

// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{,.trans}.shared.b16: `count` 8x8 matrices of
// 16-bit elements, row addresses given by lanes 0..8*count-1.
void ldmatrix(uint32_t* r, int count, bool trans, const void* row_address, const char* file, int line);

// wgmma.mma_async.sync.aligned.m64nNk16.f32.{f16,bf16}.{f16,bf16} and m64nNk8.f32.tf32.tf32
// (one 32-byte K step) with both operands in shared memory, K-major, described by 64-bit
// matrix descriptors (only the 64-byte swizzle is emulated); tf32 operands are fp32 bit
// patterns of which the top 19 bits count (as mma_sync's: the low 13 mantissa bits
// dropped). Checks the warp and the descriptors now, queues the operation and runs it at
// the wgmma_wait_group that covers it: this thread's d[4j + i] = D[16w + g + 8*(i>>1)][8j
// + 2t + (i&1)] (w: warp in the warpgroup), summed as mma_sync.
// All four (fence, mma_async, commit, wait) are checked as warpgroup-wide instructions
// (the same sequence and operands in all 128 threads), and the accumulator against the
// register protocol of wgmma.fence (tensor_core_emu.cpp).
void wgmma_async(MmaInput type, float* d, int n, uint64_t desc_a, uint64_t desc_b, int scale_d, const char* file,
                 int line);
void wgmma_fence(const char* file, int line);
void wgmma_commit_group(const char* file, int line);
void wgmma_wait_group(int pending_groups_left, const char* file, int line);

}  // namespace emu
}  // namespace vk
