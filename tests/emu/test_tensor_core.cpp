// The tensor-core wrappers (kernels/tensor_core.cuh) on the emulator: a warp loads
// tiles with cp.async, reads fragments with ldmatrix (plain and transposed), multiplies
// with mma.sync and stores by the accumulator layout; a warpgroup multiplies swizzled
// shared tiles with wgmma; the product must equal a plain GEMM. Integer-valued inputs keep
// every sum exact, so equality is exact. The same kernels must match on a real GPU once
// before the wrappers are trusted there.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../../csrc/emu/launch.h"
#include "../../csrc/kernels/numeric.cuh"
#include "../../csrc/kernels/tensor_core.cuh"
#include "harness.h"

using emu_test::expect_error;
using vk::emu::launch;
using namespace vk::emu;  // the kernels' namespace (VK_KERNEL_NS) on the emulator

namespace {

constexpr int kM = 16, kN = 8, kK = 32, kPad = 8;  // padded rows: 80-byte stride, 16-byte aligned

// D (16x8, fp32, row-major) = A (16x32, row-major) * B, with B given as Bt (8x32: Bt[n][k])
// when kTransB is false, or as B (32x8, row-major) when kTransB is true.
template <class T, MmaType kType, bool kTransB>
__global__ void gemm_tile_kernel(const T* A, const T* Bsrc, float* D) {
  VK_SHARED(T, As, [kM][kK + kPad]);
  VK_SHARED(T, Bs, [kTransB ? kK : kN][kTransB ? kN + kPad : kK + kPad]);
  const int lane = threadIdx.x;
  // A: 16 rows x 4 chunks of 8 elements (16 bytes): 64 copies, 2 per lane.
  for (int c = lane; c < kM * kK / 8; c += 32) {
    const int row = c / (kK / 8), col = (c % (kK / 8)) * 8;
    cp_async_16(&As[row][col], A + row * kK + col);
  }
  if (!kTransB) {
    for (int c = lane; c < kN * kK / 8; c += 32) {
      const int row = c / (kK / 8), col = (c % (kK / 8)) * 8;
      cp_async_16(&Bs[row][col], Bsrc + row * kK + col);
    }
  } else {
    for (int c = lane; c < kK; c += 32) cp_async_16(&Bs[c][0], Bsrc + c * kN);  // one 8-element row each
  }
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int k0 = 0; k0 < kK; k0 += 16) {
    uint32_t a[4], b[2];
    ldmatrix<4>(a, &As[lane % 16][k0 + (lane / 16) * 8]);
    if (!kTransB) {
      ldmatrix<2>(b, &Bs[lane % 8][k0 + ((lane / 8) % 2) * 8]);
    } else {
      ldmatrix<2, true>(b, &Bs[k0 + (lane % 16)][0]);
    }
    mma_m16n8k16<kType>(acc, a, b, acc);
  }
  const int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) D[(g + 8 * (i / 2)) * kN + 2 * t + (i % 2)] = acc[i];
}

// The same product through the tf32 instruction, fragments read by the documented layout.
__global__ void gemm_tile_tf32_kernel(const float* A, const float* Bt, float* D) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int k0 = 0; k0 < kK; k0 += 8) {
    uint32_t a[4], b[2];
    for (int r = 0; r < 4; ++r) a[r] = to_tf32(A[(g + 8 * (r & 1)) * kK + k0 + t + 4 * (r >> 1)]);
    for (int r = 0; r < 2; ++r) b[r] = to_tf32(Bt[g * kK + k0 + t + 4 * r]);
    mma_m16n8k8_tf32(acc, a, b, acc);
  }
  for (int i = 0; i < 4; ++i) D[(g + 8 * (i / 2)) * kN + 2 * t + (i % 2)] = acc[i];
}

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

template <class T>
T from_double(double v);
template <>
__half from_double<__half>(double v) { return __float2half_rn(static_cast<float>(v)); }
template <>
__nv_bfloat16 from_double<__nv_bfloat16>(double v) { return __float2bfloat16_rn(static_cast<float>(v)); }

template <class T, MmaType kType, bool kTransB>
void check_gemm_tile() {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> d(-4, 4);
  std::vector<double> a(kM * kK), b(kK * kN);  // b[k][n]
  for (double& v : a) v = d(rng);
  for (double& v : b) v = d(rng);
  std::vector<T> A(kM * kK), B(kK * kN);
  for (int i = 0; i < kM * kK; ++i) A[i] = from_double<T>(a[i]);
  for (int k = 0; k < kK; ++k)
    for (int n = 0; n < kN; ++n) B[kTransB ? k * kN + n : n * kK + k] = from_double<T>(b[k * kN + n]);
  std::vector<float> D(kM * kN, NAN);
  launch("gemm_tile_kernel", gemm_tile_kernel<T, kType, kTransB>, dim3(1), dim3(32), 0, A.data(), B.data(), D.data());
  for (int m = 0; m < kM; ++m)
    for (int n = 0; n < kN; ++n) {
      double want = 0;
      for (int k = 0; k < kK; ++k) want += a[m * kK + k] * b[k * kN + n];
      CHECK(D[m * kN + n] == static_cast<float>(want));
    }
}

EMU_TEST(mma_f16_with_ldmatrix) { check_gemm_tile<__half, MmaType::f16, false>(); }
EMU_TEST(mma_bf16_with_ldmatrix) { check_gemm_tile<__nv_bfloat16, MmaType::bf16, false>(); }
EMU_TEST(mma_f16_with_ldmatrix_trans) { check_gemm_tile<__half, MmaType::f16, true>(); }

EMU_TEST(mma_tf32) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> d(-4, 4);
  std::vector<float> A(kM * kK), Bt(kN * kK), D(kM * kN, NAN);
  for (float& v : A) v = static_cast<float>(d(rng));
  for (float& v : Bt) v = static_cast<float>(d(rng));
  launch("gemm_tile_tf32_kernel", gemm_tile_tf32_kernel, dim3(1), dim3(32), 0, A.data(), Bt.data(), D.data());
  for (int m = 0; m < kM; ++m)
    for (int n = 0; n < kN; ++n) {
      double want = 0;
      for (int k = 0; k < kK; ++k) want += double(A[m * kK + k]) * Bt[n * kK + k];
      CHECK(D[m * kN + n] == static_cast<float>(want));
    }
}

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

// wgmma: one warpgroup, D (64x128) = A (64x32) * B (32x128) in two k16 steps, A given
// row-major (A[m][k]) and B as Bt (Bt[n][k]), both stored K-major in rows of 64 bytes with
// the 64-byte swizzle written from the PTX ISA's description (address bits 4-5 XOR bits
// 7-8), independently of the conv kernel's offset(); D read back by the documented
// accumulator layout. It does so twice, the second time on the same registers zeroed
// again (as a kernel's next tile would), which wgmma's register protocol allows after a
// wgmma_fence(). `fault` breaks one rule for the error tests.
__device__ int sw64(int row, int k) {
  const int linear = row * 64 + k * 2;
  return linear ^ (((linear >> 7) & 3) << 4);
}
enum class WgmmaFault {
  none,
  swizzle_mode,
  misaligned_start,
  no_wait,
  no_proxy_fence,
  no_register_fence,  // no wgmma_fence() before the first wgmma
  unfenced_rewrite,   // round 2: the accumulator zeroed with no wgmma_fence() after
  write_after_fence,  // round 2: the accumulator written between the fence and the wgmma
  write_in_flight,    // round 2: the accumulator written before the wait
  warp_descriptor,    // warp 1 gives another A descriptor than the rest of its warpgroup
  warp_skips_commit,  // round 2: warp 3 does not commit
  warp_leaves_early,  // warp 3 returns before round 2
};

template <class T, MmaType kType>
__global__ void wgmma_tile_kernel(const T* A, const T* Bt, float* D, WgmmaFault fault) {
  VK_DYNAMIC_SHARED(unsigned char, smem);
  unsigned char* const as = smem;            // 64 rows x 64 bytes
  unsigned char* const bs = smem + 64 * 64;  // 128 rows x 64 bytes
  // Pairs of elements through st_shared (which the emulator sees), as the generic proxy.
  for (int i = threadIdx.x; i < 64 * 16; i += blockDim.x) {
    const T pair[2] = {A[2 * i], A[2 * i + 1]};
    st_shared(reinterpret_cast<uint32_t*>(as + sw64(i / 16, 2 * (i % 16))), *reinterpret_cast<const uint32_t*>(pair));
  }
  for (int i = threadIdx.x; i < 128 * 16; i += blockDim.x) {
    const T pair[2] = {Bt[2 * i], Bt[2 * i + 1]};
    st_shared(reinterpret_cast<uint32_t*>(bs + sw64(i / 16, 2 * (i % 16))), *reinterpret_cast<const uint32_t*>(pair));
  }
  if (fault != WgmmaFault::no_proxy_fence) fence_proxy_async();
  __syncthreads();
  uint64_t da = smem_desc_k_sw64(as, 512), db = smem_desc_k_sw64(bs, 512);
  if (fault == WgmmaFault::swizzle_mode) da ^= uint64_t(3) << 62;  // mode 1: the 128-byte swizzle
  if (fault == WgmmaFault::misaligned_start) db += 4;               // 64 bytes: row 1 of the pattern
  if (fault == WgmmaFault::warp_descriptor && threadIdx.x / 32 == 1) da += 32;  // 512 bytes: 8 rows on
  float d[64];
  for (int round = 0; round < 2; ++round) {
    const bool second = round == 1;
    if (second && fault == WgmmaFault::warp_leaves_early && threadIdx.x / 32 == 3) return;
    for (float& v : d) v = 0.f;
    if (fault != WgmmaFault::no_register_fence && !(second && fault == WgmmaFault::unfenced_rewrite)) wgmma_fence();
    if (second && fault == WgmmaFault::write_after_fence) d[0] = 1.f;
    for (int kk = 0; kk < 2; ++kk) wgmma_m64nN<kType, 128>(d, da + 2 * kk, db + 2 * kk);  // + 32 bytes per step
    if (!(second && fault == WgmmaFault::warp_skips_commit && threadIdx.x / 32 == 3)) wgmma_commit();
    if (second && fault == WgmmaFault::write_in_flight) d[1] = 1.f;
    if (fault == WgmmaFault::no_wait) return;
    wgmma_wait<0>();
  }
  const int w = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
  for (int j = 0; j < 16; ++j)
    for (int i = 0; i < 4; ++i) D[(16 * w + g + 8 * (i / 2)) * 128 + 8 * j + 2 * t + i % 2] = d[4 * j + i];
}

template <class T, MmaType kType>
void check_wgmma_tile() {
  std::mt19937 rng(17);
  std::uniform_int_distribution<int> dist(-4, 4);
  std::vector<double> a(64 * 32), bt(128 * 32);
  for (double& v : a) v = dist(rng);
  for (double& v : bt) v = dist(rng);
  std::vector<T> A(a.size()), Bt(bt.size());
  for (size_t i = 0; i < a.size(); ++i) A[i] = from_double<T>(a[i]);
  for (size_t i = 0; i < bt.size(); ++i) Bt[i] = from_double<T>(bt[i]);
  std::vector<float> D(64 * 128, NAN);
  launch("wgmma_tile_kernel", wgmma_tile_kernel<T, kType>, dim3(1), dim3(128), size_t(192 * 64), A.data(), Bt.data(),
         D.data(), WgmmaFault::none);
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < 128; ++n) {
      double want = 0;
      for (int k = 0; k < 32; ++k) want += a[m * 32 + k] * bt[n * 32 + k];
      CHECK(D[m * 128 + n] == static_cast<float>(want));
    }
}

EMU_TEST(wgmma_f16_64b_swizzle) { check_wgmma_tile<__half, MmaType::f16>(); }
EMU_TEST(wgmma_bf16_64b_swizzle) { check_wgmma_tile<__nv_bfloat16, MmaType::bf16>(); }

EMU_TEST(wgmma_misuse_is_reported) {
  std::vector<__half> A(64 * 32, __float2half_rn(1.f)), Bt(128 * 32, __float2half_rn(1.f));
  std::vector<float> D(64 * 128);
  auto run = [&](WgmmaFault f, unsigned threads) {
    launch("wgmma_tile_kernel", wgmma_tile_kernel<__half, MmaType::f16>, dim3(1), dim3(threads), size_t(192 * 64),
           A.data(), Bt.data(), D.data(), f);
  };
  expect_error([&] { run(WgmmaFault::swizzle_mode, 128); }, {"wgmma_tile_kernel", "64-byte swizzle"});
  expect_error([&] { run(WgmmaFault::misaligned_start, 128); }, {"wgmma_tile_kernel", "512-byte"});
  expect_error([&] { run(WgmmaFault::no_wait, 128); }, {"wgmma_tile_kernel", "never waited for"});
  expect_error([&] { run(WgmmaFault::none, 96); }, {"wgmma_tile_kernel", "whole warpgroups"});
  expect_error([&] { run(WgmmaFault::no_proxy_fence, 128); }, {"wgmma_tile_kernel", "fence.proxy.async"});
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
