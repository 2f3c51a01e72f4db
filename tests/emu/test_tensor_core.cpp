// The tensor-core wrappers (kernels/tensor_core.cuh) on the emulator. The GEMM and
// ldmatrix cases (tests/tensor_core_cases.cuh: cp.async into shared memory, ldmatrix
// plain and transposed, mma.sync, wgmma on swizzled tiles) must equal the exact product,
// or the PTX ISA's fragment layout; tests/tensor_core_probe.cu runs the same cases on a
// GPU, where they must pass once before the wrappers are trusted there. Below them, the
// emulator's own behaviour: cp.async timing, bank counts, and misuse reported.
#include <cmath>
#include <cstdlib>
#include <vector>

#include "../../csrc/emu/launch.h"
#include "../tensor_core_cases.cuh"
#include "harness.h"

using emu_test::expect_error;
using vk::emu::launch;
using namespace vk::emu;  // the kernels' namespace (VK_KERNEL_NS) on the emulator
using namespace vk::emu::tc_kernels;

namespace {

// cp.async: data lands at the wait, zero fill past src_bytes.
__global__ void async_copy_kernel(const float* src, float* out) {
  VK_SHARED(float, buf, [8]);
  if (threadIdx.x == 0) {
    cp_async_16(&buf[0], src, 16);
    cp_async_16(&buf[4], src + 4, 8);  // two floats copied, two zero-filled
    cp_async_commit();
    out[0] = buf[0];  // too early: still the poison
    cp_async_wait<0>();
    for (int i = 0; i < 8; ++i) out[1 + i] = buf[i];
  }
}

__global__ void misaligned_ldmatrix_kernel(float* out) {
  VK_SHARED(__half, tile, [8][16]);
  for (int i = threadIdx.x; i < 128; i += 32) tile[i / 16][i % 16] = __float2half(1.f);
  __syncthreads();
  uint32_t r[1];
  ldmatrix<1>(r, &tile[threadIdx.x % 8][1]);  // 2-byte offset: not 16-byte aligned
  out[threadIdx.x] = static_cast<float>(r[0]);
}

// Bank accounting: 32 lanes each cp.async 16 bytes to row `lane` of a `stride`-byte
// row layout, then one ldmatrix.x4 whose 32 row addresses follow the same stride.
__global__ void bank_pattern_kernel(const float* src, int stride) {
  VK_DYNAMIC_SHARED(unsigned char, smem);
  cp_async_16(smem + threadIdx.x * stride, src);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  uint32_t r[4];
  ldmatrix<4>(r, smem + threadIdx.x * stride);
  __syncthreads();
  const float4 v = ld_shared(reinterpret_cast<const float4*>(smem + threadIdx.x * stride));
  st_shared(reinterpret_cast<float4*>(smem + threadIdx.x * stride), v);
}

// The cases' runner on the emulator: the host vectors are the kernel's buffers.
template <class T>
const T* buffer(const std::vector<T>& v) { return v.data(); }
template <class T>
T buffer(T v) { return v; }
const auto emu_launch = [](const char* name, auto kernel, int threads, size_t smem, auto& out, const auto&... args) {
  launch(name, kernel, dim3(1), dim3(threads), smem, out.data(), buffer(args)...);
};

EMU_TEST(mma_cases) { CHECK(tc_cases::run_mma_cases(emu_launch) == 0); }
EMU_TEST(ldmatrix_cases) { CHECK(tc_cases::run_ldmatrix_cases(emu_launch) == 0); }
EMU_TEST(wgmma_cases) { CHECK(tc_cases::run_wgmma_cases(emu_launch) == 0); }

EMU_TEST(tf32_rounding) {
  // 1 + 2^-11 is halfway between two tf32 values: ties round away from zero.
  CHECK(to_tf32(1.f + std::ldexp(1.f, -11)) == __float_as_uint(1.f + std::ldexp(1.f, -10)));
  CHECK(to_tf32(-(1.f + std::ldexp(1.f, -11))) == __float_as_uint(-(1.f + std::ldexp(1.f, -10))));
  CHECK(to_tf32(1.f + std::ldexp(1.f, -12)) == __float_as_uint(1.f));
  CHECK(std::isnan(__uint_as_float(to_tf32(NAN))));
}

EMU_TEST(cp_async_lands_at_wait_with_zero_fill) {
  const float src[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> out(9, -1.f);
  launch("async_copy_kernel", async_copy_kernel, dim3(1), dim3(32), 0, src, out.data());
  CHECK(std::isnan(out[0]));
  const float want[8] = {1, 2, 3, 4, 5, 6, 0, 0};
  for (int i = 0; i < 8; ++i) CHECK(out[1 + i] == want[i]);
}

EMU_TEST(cp_async_lands_at_issue_when_eager) {
  // VGGKERN_EMU_CP_ASYNC=eager: the other legal end, the copy is there before the wait.
  const float src[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> out(9, -1.f);
  setenv("VGGKERN_EMU_CP_ASYNC", "eager", 1);
  launch("async_copy_kernel", async_copy_kernel, dim3(1), dim3(32), 0, src, out.data());
  unsetenv("VGGKERN_EMU_CP_ASYNC");
  CHECK(out[0] == 1.f);
  const float want[8] = {1, 2, 3, 4, 5, 6, 0, 0};
  for (int i = 0; i < 8; ++i) CHECK(out[1 + i] == want[i]);
}

EMU_TEST(shared_bank_wavefronts) {
  // The same 16-byte addresses by cp.async, ldmatrix, ld_shared and st_shared. Stride 16:
  // every phase is 128 contiguous bytes (1 wavefront); 32: the 8 lanes of a
  // phase span 256 bytes, two words per bank (2); 64: four (4); 80: rows 5 units of 16
  // bytes apart, 8 distinct units mod 8 (1); 128: every lane on the same banks (8).
  const float src[4] = {1, 2, 3, 4};
  const struct {
    int stride;
    uint64_t per_phase;
  } cases[] = {{16, 1}, {32, 2}, {64, 4}, {80, 1}, {128, 8}};
  for (const auto& c : cases) {
    reset_shared_bank_stats();
    launch("bank_pattern_kernel", bank_pattern_kernel, dim3(1), dim3(32), size_t(32 * c.stride), src, c.stride);
    const SharedBankStats s = shared_bank_stats();
    // cp.async: 4 phases of 8 lanes; ldmatrix.x4: 4 matrices of 8 rows.
    CHECK(s.cp_async.instructions == 1 && s.cp_async.ideal == 4 && s.cp_async.wavefronts == 4 * c.per_phase);
    CHECK(s.ldmatrix.instructions == 1 && s.ldmatrix.ideal == 4 && s.ldmatrix.wavefronts == 4 * c.per_phase);
    // 16-byte ld_shared / st_shared: 4 phases of 8 lanes, like cp.async.
    CHECK(s.load.instructions == 1 && s.load.ideal == 4 && s.load.wavefronts == 4 * c.per_phase);
    CHECK(s.store.instructions == 1 && s.store.ideal == 4 && s.store.wavefronts == 4 * c.per_phase);
  }
}


EMU_TEST(wgmma_misuse_is_reported) {
  std::vector<__half> A(64 * 32, __float2half_rn(1.f)), Bt(128 * 32, __float2half_rn(1.f));
  std::vector<float> D(64 * 128);
  auto run = [&](WgmmaFault f, unsigned threads) {
    launch("wgmma_tile_kernel", wgmma_tile_kernel<__half, MmaType::f16>, dim3(1), dim3(threads), kWgmmaSmemBytes,
           D.data(), A.data(), Bt.data(), f);
  };
  expect_error([&] { run(WgmmaFault::swizzle_mode, 128); }, {"wgmma_tile_kernel", "64-byte swizzle"});
  expect_error([&] { run(WgmmaFault::misaligned_start, 128); }, {"wgmma_tile_kernel", "512-byte"});
  expect_error([&] { run(WgmmaFault::no_wait, 128); }, {"wgmma_tile_kernel", "never waited for"});
  expect_error([&] { run(WgmmaFault::none, 96); }, {"wgmma_tile_kernel", "whole warpgroups"});
  expect_error([&] { run(WgmmaFault::no_proxy_fence, 128); }, {"wgmma_tile_kernel", "fence.proxy.async"});
  // Fenced but not ordered: the warps' stores race with the other warps' wgmma reads.
  expect_error([&] { run(WgmmaFault::no_barrier, 128); }, {"wgmma_tile_kernel", "shared-memory race"});
  // wgmma's register protocol and its warpgroup-wide instructions.
  expect_error([&] { run(WgmmaFault::no_register_fence, 128); }, {"wgmma_tile_kernel", "before any wgmma_fence"});
  expect_error([&] { run(WgmmaFault::unfenced_rewrite, 128); }, {"wgmma_tile_kernel", "without a wgmma_fence() after"});
  expect_error([&] { run(WgmmaFault::write_after_fence, 128); }, {"wgmma_tile_kernel", "without a wgmma_fence() after"});
  expect_error([&] { run(WgmmaFault::write_in_flight, 128); }, {"wgmma_tile_kernel", "while the wgmma was in flight"});
  expect_error([&] { run(WgmmaFault::warp_descriptor, 128); }, {"wgmma_tile_kernel", "wgmma.mma_async", "other operands"});
  expect_error([&] { run(WgmmaFault::warp_skips_commit, 128); },
               {"wgmma_tile_kernel", "wgmma.wait_group", "wgmma.commit_group", "same wgmma instructions"});
  expect_error([&] { run(WgmmaFault::warp_leaves_early, 128); },
               {"wgmma_tile_kernel", "wgmma.fence", "96 of the 128 threads of warpgroup 0"});
}

EMU_TEST(ldmatrix_misaligned_is_reported) {
  std::vector<float> out(32);
  expect_error([&] { launch("misaligned_ldmatrix_kernel", misaligned_ldmatrix_kernel, dim3(1), dim3(32), 0, out.data()); },
               {"misaligned_ldmatrix_kernel", "16-byte aligned"});
}

}  // namespace
