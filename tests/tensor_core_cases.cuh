// The tensor-core wrappers' test cases (csrc/kernels/tensor_core.cuh), in one place for
// two runners:
//   tests/emu/test_tensor_core.cpp   the host compiler: the kernels run through the SIMT
//                                    emulator (CI, no GPU);
//   tests/tensor_core_probe.cu       nvcc: the same kernels on a GPU (benchmarks/
//                                    device_run.sh runs it before anything else).
// Each case checks a property that does not depend on the emulator: a GEMM equals the
// exact product of its inputs, and an ldmatrix fragment holds the elements the PTX ISA
// says it does. So the emulator and the GPU agree wherever both pass.
//
// Where a GPU disagrees, the patterns say which layout is wrong. Besides small random
// integers (every sum exact in fp32), three GEMM patterns make each output element carry
// one coordinate of what it was computed from:
//   row_code: D[m][n] = m + 1 (A's row m read at k = 0, B's row k = 0 all ones);
//   col_code: D[m][n] = n + 1 (A's column k = 0 all ones, B's row k = 0 = n + 1);
//   k_code:   D[m][n] = m % K + 1 (A one-hot at k = m % K, B[k][n] = k + 1).
// A wrong element's value is then the row, column or k the hardware paired it with. All
// the codes are at most 128: exact in fp16, bf16 and tf32.
//
// Shapes: the mma.sync tile is D (16x8) = A (16x32) * B (32x8), two k16 (or four tf32
// k8) steps; the wgmma tile D (64x128) = A (64xK) * B (Kx128), K = 32 halves or 16 floats
// (64-byte rows), two 32-byte k steps (k16, or k8 tf32), done twice on the same registers. Matrices are row-major; "Bt" is B transposed (Bt[n][k]).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../csrc/kernels/numeric.cuh"
#include "../csrc/kernels/tensor_core.cuh"

namespace vk {
namespace VK_KERNEL_NS {
namespace tc_kernels {

constexpr int kM = 16, kN = 8, kK = 32, kPad = 8;  // padded rows: 80-byte stride, 16-byte aligned

// D (16x8, fp32) = A (16x32) * B, B given as Bt (8x32) when kTransB is false, or as B
// (32x8) when kTransB is true: cp.async into shared memory, ldmatrix (plain, or .trans for
// B), mma.sync m16n8k16, D stored by the accumulator layout.
template <class T, MmaType kType, bool kTransB>
__global__ void gemm_tile_kernel(float* D, const T* A, const T* Bsrc) {
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

// The same product through the tf32 instruction, fragments read from global memory by
// the documented layout (no ldmatrix: this case isolates mma's own layout).
__global__ void gemm_tile_tf32_kernel(float* D, const float* A, const float* Bt) {
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

// ldmatrix.x4 alone: four 8x8 fp16 matrices in shared memory (rows 16 bytes apart),
// matrix j's row i addressed by lane 8j + i; out[lane * 4 + j] = the lane's register j.
// The tile holds ldmatrix_code(j, row, col), so each half of a register names its element.
template <bool kTrans>
__global__ void ldmatrix_x4_kernel(uint32_t* out, const __half* tile) {
  VK_SHARED(__half, s, [32][8]);
  const int lane = threadIdx.x;
  cp_async_16(&s[lane][0], tile + lane * 8);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  uint32_t r[4];
  ldmatrix<4, kTrans>(r, &s[lane][0]);
  for (int j = 0; j < 4; ++j) out[lane * 4 + j] = r[j];
}

// wgmma: one warpgroup, D (64x128) = A (64xK) * B (Kx128), K = wgmma_k<T> (one 64-byte
// row: 32 halves or 16 floats) in two 32-byte k steps (m64n128k16, or m64n128k8.tf32), A
// given row-major (A[m][k]) and B as Bt (Bt[n][k]), both stored K-major in rows of 64 bytes with
// the 64-byte swizzle written from the PTX ISA's description (address bits 4-5 XOR bits
// 7-8), independently of the conv kernel's offset(); D read back by the documented
// accumulator layout. It does so twice, the second time on the same registers zeroed
// again (as a kernel's next tile would), which wgmma's register protocol allows after a
// wgmma_fence(). `fault` breaks one rule for the emulator's error tests (the GPU runs
// WgmmaFault::none only).
__device__ __forceinline__ int sw64(int row, int byte) {
  const int linear = row * 64 + byte;
  return linear ^ (((linear >> 7) & 3) << 4);
}
enum class WgmmaFault {
  none,
  swizzle_mode,
  misaligned_start,
  no_wait,
  no_proxy_fence,
  no_barrier,         // no __syncthreads() between the stores and the wgmma (each thread fenced its own)
  no_register_fence,  // no wgmma_fence() before the first wgmma
  unfenced_rewrite,   // round 2: the accumulator zeroed with no wgmma_fence() after
  write_after_fence,  // round 2: the accumulator written between the fence and the wgmma
  write_in_flight,    // round 2: the accumulator written before the wait
  warp_descriptor,    // warp 1 gives another A descriptor than the rest of its warpgroup
  warp_skips_commit,  // round 2: warp 3 does not commit
  warp_leaves_early,  // warp 3 returns before round 2
};
constexpr int kWgM = 64, kWgN = 128;
template <class T>
constexpr int wgmma_k = 64 / int(sizeof(T));
constexpr size_t kWgmmaSmemBytes = size_t(kWgM + kWgN) * 64;

template <class T, MmaType kType>
__global__ void wgmma_tile_kernel(float* D, const T* A, const T* Bt, WgmmaFault fault) {
  VK_DYNAMIC_SHARED(unsigned char, smem);
  unsigned char* const as = smem;            // 64 rows x 64 bytes
  unsigned char* const bs = smem + 64 * 64;  // 128 rows x 64 bytes
  // Pairs of elements through st_shared (which the emulator sees), as the generic proxy.
  // Word i (4 bytes) of the row-major source is word i % 16 of row i / 16.
  auto store_word = [](unsigned char* tile, int i, const T* src) {
    uint32_t bits;
    memcpy(&bits, reinterpret_cast<const unsigned char*>(src) + 4 * i, sizeof bits);
    st_shared(reinterpret_cast<uint32_t*>(tile + sw64(i / 16, 4 * (i % 16))), bits);
  };
  for (int i = threadIdx.x; i < 64 * 16; i += blockDim.x) store_word(as, i, A);
  for (int i = threadIdx.x; i < 128 * 16; i += blockDim.x) store_word(bs, i, Bt);
  if (fault != WgmmaFault::no_proxy_fence) fence_proxy_async();
  if (fault != WgmmaFault::no_barrier) __syncthreads();
  uint64_t da = smem_desc_k_sw64(as, 512), db = smem_desc_k_sw64(bs, 512);
  if (fault == WgmmaFault::swizzle_mode) da ^= uint64_t(3) << 62;  // mode 1: the 128-byte swizzle
  if (fault == WgmmaFault::misaligned_start) db += 4;               // 64 bytes: row 1 of the pattern
  if (fault == WgmmaFault::warp_descriptor && threadIdx.x / 32 == 1) da += 32;  // 512 bytes: 8 rows on
  float d[64];
  for (int round = 0; round < 2; ++round) {
    const bool second = round == 1;
    if (second && fault == WgmmaFault::warp_leaves_early && threadIdx.x / 32 == 3) return;
    for (float& v : d) v = 0.f;
    wgmma_pin<64>(d);
    if (fault != WgmmaFault::no_register_fence && !(second && fault == WgmmaFault::unfenced_rewrite)) wgmma_fence();
    if (second && fault == WgmmaFault::write_after_fence) d[0] = 1.f;
    for (int kk = 0; kk < 2; ++kk) wgmma_m64nN<kType, 128>(d, da + 2 * kk, db + 2 * kk);  // + 32 bytes per step
    if (!(second && fault == WgmmaFault::warp_skips_commit && threadIdx.x / 32 == 3)) wgmma_commit();
    if (second && fault == WgmmaFault::write_in_flight) d[1] = 1.f;
    if (fault == WgmmaFault::no_wait) return;
    wgmma_wait<0>();
    wgmma_pin<64>(d);
  }
  const int w = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
  for (int j = 0; j < 16; ++j)
    for (int i = 0; i < 4; ++i) D[(16 * w + g + 8 * (i / 2)) * 128 + 8 * j + 2 * t + i % 2] = d[4 * j + i];
}

}  // namespace tc_kernels
}  // namespace VK_KERNEL_NS
}  // namespace vk

// ---- host side: inputs, expected results, reports (no device code) -------------------
namespace tc_cases {

using vk::VK_KERNEL_NS::MmaType;

enum class Pattern { random, row_code, col_code, k_code };

inline const char* pattern_name(Pattern p) {
  switch (p) {
    case Pattern::random: return "random";
    case Pattern::row_code: return "row_code";
    case Pattern::col_code: return "col_code";
    default: return "k_code";
  }
}

// A (M x K) and B (K x N), row-major, as exact small integers.
struct Gemm {
  int M, N, K;
  Pattern pattern;
  std::vector<double> a, b;
  double product(int m, int n) const {
    double s = 0;
    for (int k = 0; k < K; ++k) s += a[size_t(m) * K + k] * b[size_t(k) * N + n];
    return s;
  }
};

inline Gemm make_gemm(int M, int N, int K, Pattern p, unsigned seed) {
  Gemm g{M, N, K, p, std::vector<double>(size_t(M) * K), std::vector<double>(size_t(K) * N)};
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-4, 4);
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < K; ++k) {
      double& v = g.a[size_t(m) * K + k];
      switch (p) {
        case Pattern::random: v = d(rng); break;
        case Pattern::row_code: v = k == 0 ? m + 1 : 0; break;
        case Pattern::col_code: v = k == 0 ? 1 : 0; break;
        case Pattern::k_code: v = k == m % K ? 1 : 0; break;
      }
    }
  for (int k = 0; k < K; ++k)
    for (int n = 0; n < N; ++n) {
      double& v = g.b[size_t(k) * N + n];
      switch (p) {
        case Pattern::random: v = d(rng); break;
        case Pattern::row_code: v = k == 0 ? 1 : 0; break;
        case Pattern::col_code: v = k == 0 ? n + 1 : 0; break;
        case Pattern::k_code: v = k + 1; break;
      }
    }
  return g;
}

template <class T>
T from_double(double v);
template <>
inline float from_double<float>(double v) { return static_cast<float>(v); }
template <>
inline __half from_double<__half>(double v) { return __float2half_rn(static_cast<float>(v)); }
template <>
inline __nv_bfloat16 from_double<__nv_bfloat16>(double v) { return __float2bfloat16_rn(static_cast<float>(v)); }

// A as the kernels read it: row-major M x K.
template <class T>
std::vector<T> operand_a(const Gemm& g) {
  std::vector<T> A(g.a.size());
  for (size_t i = 0; i < A.size(); ++i) A[i] = from_double<T>(g.a[i]);
  return A;
}
// B as Bt (N x K) when transposed, else row-major K x N.
template <class T>
std::vector<T> operand_b(const Gemm& g, bool transposed) {
  std::vector<T> B(g.b.size());
  for (int k = 0; k < g.K; ++k)
    for (int n = 0; n < g.N; ++n)
      B[transposed ? size_t(n) * g.K + k : size_t(k) * g.N + n] = from_double<T>(g.b[size_t(k) * g.N + n]);
  return B;
}

// The number of elements of D (M x N, row-major) that differ from the exact product;
// the first `lines` of them described in *report.
inline int compare(const Gemm& g, const float* D, std::string* report, int lines = 12) {
  int bad = 0;
  for (int m = 0; m < g.M; ++m)
    for (int n = 0; n < g.N; ++n) {
      const float want = static_cast<float>(g.product(m, n)), got = D[size_t(m) * g.N + n];
      if (got == want) continue;
      if (report != nullptr && bad < lines) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "\n    D[%d][%d] = %g, want %g", m, n, double(got), double(want));
        *report += buf;
      }
      ++bad;
    }
  return bad;
}

// ldmatrix: element (row, col) of matrix j holds j * 64 + row * 8 + col (< 256: exact in fp16).
inline float ldmatrix_code(int j, int row, int col) { return float(j * 64 + row * 8 + col); }

inline std::vector<__half> ldmatrix_tile() {
  std::vector<__half> tile(32 * 8);
  for (int j = 0; j < 4; ++j)
    for (int r = 0; r < 8; ++r)
      for (int c = 0; c < 8; ++c) tile[(j * 8 + r) * 8 + c] = from_double<__half>(ldmatrix_code(j, r, c));
  return tile;
}

// What the PTX ISA puts in lane (g, t)'s register j: M_j[g][2t + {0, 1}], or with .trans
// M_j[2t + {0, 1}][g] (the lower half holds the first). The number of registers that
// differ; the first `lines` described in *report, each half decoded to the element it holds.
inline int compare_ldmatrix(const uint32_t* out, bool trans, std::string* report, int lines = 12) {
  auto half_at = [](uint32_t r, int i) {
    const uint16_t bits = static_cast<uint16_t>(i ? r >> 16 : r & 0xffff);
    __half h;
    std::memcpy(&h, &bits, sizeof h);
    return __half2float(h);
  };
  int bad = 0;
  for (int lane = 0; lane < 32; ++lane)
    for (int j = 0; j < 4; ++j) {
      const int g = lane / 4, t = lane % 4;
      bool same = true;
      for (int i = 0; i < 2; ++i)
        same &= half_at(out[lane * 4 + j], i) == (trans ? ldmatrix_code(j, 2 * t + i, g) : ldmatrix_code(j, g, 2 * t + i));
      if (same) continue;
      if (report != nullptr && bad < lines) {
        char buf[160];
        const float h0 = half_at(out[lane * 4 + j], 0), h1 = half_at(out[lane * 4 + j], 1);
        std::snprintf(buf, sizeof buf, "\n    lane %d r[%d] holds M%d[%d][%d], M%d[%d][%d] (codes %g, %g)", lane, j,
                      int(h0) / 64, int(h0) % 64 / 8, int(h0) % 8, int(h1) / 64, int(h1) % 64 / 8, int(h1) % 8,
                      double(h0), double(h1));
        *report += buf;
      }
      ++bad;
    }
  return bad;
}

// ---- the cases, for either runner ------------------------------------------------------
// `launch(name, kernel, threads, smem_bytes, out, args...)` runs
// kernel<<<1, threads, smem_bytes>>>(out, args...) on the runner's device, each
// std::vector argument as a buffer holding its contents, and copies the output buffer
// back into `out`; other arguments are passed as they are. Each case prints
// one line ("ok", or what differs); each function returns how many cases failed.

// One line per case: "ok", or how many of `total` `unit` differ and the first of them.
inline bool print_case(const std::string& name, int bad, int total, const char* unit, const std::string& lines) {
  std::printf("tensor-core case %s: %s", name.c_str(), bad ? "DIFFERS" : "ok");
  if (bad) std::printf(" (%d of %d %s)%s", bad, total, unit, lines.c_str());
  std::printf("\n");
  return bad != 0;
}

// A GEMM kernel on every pattern: kernel(D, A, B, extra...), with A and B laid out by
// operand_a<T> and operand_b<T>(transposed_b).
template <class T, class Launch, class Kernel, class... Extra>
int run_gemm_cases(Launch&& launch, const char* name, Kernel kernel, int M, int N, int K, bool transposed_b,
                   int threads, size_t smem_bytes, Extra... extra) {
  int failed = 0;
  for (Pattern p : {Pattern::random, Pattern::row_code, Pattern::col_code, Pattern::k_code}) {
    const Gemm g = make_gemm(M, N, K, p, 11);
    std::vector<float> D(size_t(M) * N, NAN);
    launch(name, kernel, threads, smem_bytes, D, operand_a<T>(g), operand_b<T>(g, transposed_b), extra...);
    std::string lines;
    const int bad = compare(g, D.data(), &lines);
    failed += print_case(std::string(name) + " " + pattern_name(p), bad, M * N, "elements", lines);
  }
  return failed;
}

// mma.sync m16n8k16 (f16, bf16; B read by ldmatrix, plain and .trans) and m16n8k8 tf32.
template <class Launch>
int run_mma_cases(Launch&& launch) {
  namespace k = vk::VK_KERNEL_NS::tc_kernels;
  return run_gemm_cases<__half>(launch, "mma_m16n8k16 f16 + ldmatrix", k::gemm_tile_kernel<__half, MmaType::f16, false>,
                                k::kM, k::kN, k::kK, true, 32, 0) +
         run_gemm_cases<__nv_bfloat16>(launch, "mma_m16n8k16 bf16 + ldmatrix",
                                       k::gemm_tile_kernel<__nv_bfloat16, MmaType::bf16, false>, k::kM, k::kN, k::kK,
                                       true, 32, 0) +
         run_gemm_cases<__half>(launch, "mma_m16n8k16 f16 + ldmatrix.trans",
                                k::gemm_tile_kernel<__half, MmaType::f16, true>, k::kM, k::kN, k::kK, false, 32, 0) +
         run_gemm_cases<float>(launch, "mma_m16n8k8 tf32", k::gemm_tile_tf32_kernel, k::kM, k::kN, k::kK, true, 32, 0);
}

// ldmatrix.x4, plain and .trans, on its own.
template <class Launch>
int run_ldmatrix_cases(Launch&& launch) {
  namespace k = vk::VK_KERNEL_NS::tc_kernels;
  int failed = 0;
  for (bool trans : {false, true}) {
    std::vector<uint32_t> out(32 * 4, 0xffffffffu);
    launch("ldmatrix_x4_kernel", trans ? k::ldmatrix_x4_kernel<true> : k::ldmatrix_x4_kernel<false>, 32, size_t(0),
           out, ldmatrix_tile());
    std::string lines;
    const int bad = compare_ldmatrix(out.data(), trans, &lines);
    failed += print_case(trans ? "ldmatrix.x4.trans" : "ldmatrix.x4", bad, 128, "registers", lines);
  }
  return failed;
}

// wgmma m64n128k16 (f16, bf16) and m64n128k8 (tf32) from 64-byte-swizzled shared memory.
template <class Launch>
int run_wgmma_cases(Launch&& launch) {
  namespace k = vk::VK_KERNEL_NS::tc_kernels;
  return run_gemm_cases<__half>(launch, "wgmma_m64n128k16 f16", k::wgmma_tile_kernel<__half, MmaType::f16>, k::kWgM,
                                k::kWgN, k::wgmma_k<__half>, true, 128, k::kWgmmaSmemBytes, k::WgmmaFault::none) +
         run_gemm_cases<__nv_bfloat16>(launch, "wgmma_m64n128k16 bf16",
                                       k::wgmma_tile_kernel<__nv_bfloat16, MmaType::bf16>, k::kWgM, k::kWgN,
                                       k::wgmma_k<__nv_bfloat16>, true, 128, k::kWgmmaSmemBytes, k::WgmmaFault::none) +
         run_gemm_cases<float>(launch, "wgmma_m64n128k8 tf32", k::wgmma_tile_kernel<float, MmaType::tf32>, k::kWgM,
                               k::kWgN, k::wgmma_k<float>, true, 128, k::kWgmmaSmemBytes, k::WgmmaFault::none);
}

}  // namespace tc_cases
