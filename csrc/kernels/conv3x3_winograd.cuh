// conv3x3_winograd_f2x2 / _f4x4: y = [maxpool2x2](ReLU?(conv2d(x, weight, bias, stride 1,
// padding 1))) by Winograd minimal filtering F(m x m, 3x3), m = 2 or 4 (alpha = m + 2,
// P = alpha^2 = 16 or 36 transformed positions), and the filter transform it consumes.
// Same contract as conv3x3_direct (x (N, C, H, W), y (N, K, H, W) or pooled, NCHW or
// NHWC through strides, fp32 sums, one rounding at the store) except rounding and NaN
// reach: an output tile is a sum over its whole alpha x alpha input tile, so a NaN/Inf
// input may turn into NaN every output of each m x m output tile whose input tile holds it
// (input tiles overlap by 2: up to 2 x 2 output tiles), not only its 3x3 neighbourhood.
//
// winograd_filter_transform_kernel<M>: one thread per (c, k): U[p][c][k] = (G g G^T)[p]
//   for the filter g = weight[k][c], in fp32 whatever the weight's dtype (fp16/bf16 U
//   would add a rounding of the 1/6, 1/12, 1/24-weighted sums on top of the output's;
//   the kernels compute in fp32 anyway). U layout (P, C, K), K innermost: the conv
//   stages a (chunk of C) x (block of K) slab per position with coalesced rows.
//
// conv3x3_winograd_kernel<M>: fused, one kernel, no workspace. The output is cut into
// m x m tiles (tiles_h x tiles_w per image, numbered across the batch: tile t = (n *
// tiles_h + th) * tiles_w + tw). A block computes kBT tiles x kBK output channels
// (blockIdx.x = tile_block * k_groups + k_group: the K groups of one tile block are
// adjacent, so its input is read from L2). Per chunk of kChunkC input channels:
//   stage 1: each thread takes (channel, tile) items: reads the alpha x alpha input
//            patch (zeros outside the image, past C and past the last tile), V = B^T d B
//            in registers, stores V to s_v [kChunkC][P][kBT(+4)];
//            the chunk's U slab goes to s_u [kChunkC][P][kBK(+4)] (rows padded by 4
//            floats: the two positions a warp covers fall on different banks);
//   stage 2: the batched GEMM, P independent (kBT x kChunkC) * (kChunkC x kBK) products:
//            thread (p, tg, kg) owns position p for 8 tiles x 8 output channels: 64 fp32
//            accumulators, two float4 reads of V and two of U per 64 fmaf.
// After the last chunk the accumulators go to shared memory as s_m, row p * kBK + k of
// kBT tiles (reusing the stage buffers; layout under bank conflicts below), and each
// thread takes (tile, k) items: Y = A^T M A from
// the P sums, + bias, ReLU (NaN kept), the fused 2x2 max-pool with torch's NaN rule
// (an F(2x2) output tile IS one pool window; an F(4x4) tile holds 2x2 of them: tile
// origins are multiples of m, so windows never straddle tiles), convert, store what
// lies inside y. F(2x2): 256 threads, kBT = 32, kBK = 32; F(4x4): 288 threads (8 per
// position), kBT = 16, kBK = 32; both kChunkC = 8.
//
// Global memory, counted by the emulator (tests/test_global_sectors.py, 32 x 32 maps,
// C = 8, K = 32): NHWC reads whole sectors in fp32 (1.2-1.3x in fp16: a chunk of 8
// channels is half a sector); NCHW input patches, lanes M columns apart, ~1.5x (F2) /
// ~2x (F4) in fp32. Stores
// are whole sectors: NHWC runs of a sector of channels; NCHW, W % M == 0, a tile's output
// row as one vector (single elements M columns apart cost M x the sectors, 4x for F4,
// which is what the epilogue did before and still does for W % M != 0). The filter
// transform reads the weight 9 C apart per lane: 8x (fp32) / 16x (fp16), once per weight.
//
// Why fused (first-principles estimate, TO BE CONFIRMED BY MEASUREMENT; H100 SXM: ~67
// TFLOP/s fp32 on CUDA cores, ~3.35 TB/s HBM3, 50 MB L2). VGG16 conv3_x (C = K = 256,
// 56x56) at batch 32: direct is 118 GFLOP.
//   F(2x2): 25,088 tiles; GEMM 16 x 256 x 256 x 25,088 x 2 = 52.6 GFLOP (~0.8 ms at
//   67 TFLOP/s). Split into three kernels, V (16 x C x tiles fp32) = 411 MB is written
//   and read back and so is M (16 x K x tiles) = 411 MB: 1.64 GB, ~0.49 ms of HBM
//   traffic, +60% over the GEMM. Fused, the only traffic is x (103 MB) in and y (103 MB)
//   out (~0.06 ms) plus U (4 MB, L2-resident); the price is the input transform redone
//   per K group (K / kBK = 8 times: 8 x 32 adds per tile-channel against 16 x 256 x 2
//   GEMM FLOPs, 3%) and the M round trip through shared memory (per block 16 x 32 x 32
//   floats, once per kernel, not per chunk).
//   F(4x4): 6,272 tiles; GEMM 36 x 256 x 256 x 6,272 x 2 = 29.6 GFLOP (~0.44 ms);
//   split V + M traffic = 4 x 231 MB = 0.92 GB (~0.28 ms, +63%); fused: input transform
//   (~150 flops per tile-channel incl. loads) x 8 K groups against 36 x 256 x 2 = 18k: 7%.
// So the fused kernel should win at this shape by ~1.5x over a split pipeline with the
// same GEMM; the GEMM itself (CUDA cores, 64 accumulators per thread, 1 shared-memory
// float4 per 16 fmaf) is the part to tune once measured.
// Resources (nvcc 13, sm_90, -O3): F(2x2) 121-127 registers, F(4x4) 151-167, no spills,
// no stack frame (the transform coefficients fold); so F(2x2) runs 2 blocks (16 warps)
// per SM, F(4x4) 1 block (9 warps) + 94 KiB of shared memory (F(2x2): 74 KiB). Capping
// F(4x4) at 2 blocks (__launch_bounds__(288, 2)) spills 300-580 bytes per thread:
// occupancy vs spills is for the first measurement to settle.
// Bank conflicts, counted by the emulator (every shared access goes through ld_shared /
// st_shared) and checked against an independent count of this layout
// (tests/test_winograd.py): per chunk, the GEMM's float4 reads and stage 1's V and U
// stores are conflict-free in both layouts. NHWC's V stores (a warp: 8 channels x 4
// tiles) were 8-way for F(2x2) (channel planes of 576 floats, 0 mod 32) and 4-way for
// F(4x4) (720, 16 mod 32): planes padded to 580 / 724 they are conflict-free, F(2x2)'s
// 1024 wavefronts per block and chunk down to 128. NCHW's F(4x4) warps store 2 channels
// x 16 tiles and keep 720 (16 mod 32). Once per block (1.0-1.7k wavefronts, against
// 1.3-1.6k per chunk; they were 1.5-4.6k, up to a quarter of a C = 64 layer's): a
// warp dumps M as float4 rows of 8 tiles for 2-4 K groups of the same position, 8 rows
// (K) apart, so s_m shifts row group g = row / 8 by 4 (g % 2) + 16 (g / 2) floats and
// the groups' float4s fall on distinct banks (was 2-way (F(2x2)), 4-way (F(4x4))). The
// epilogue's scalar reads: NCHW warps read 1 or 2 whole rows (rows of kBT floats: 2 rows
// are 16 banks apart); NHWC warps read 32 bytes' worth of y's channels (8 fp32, 16
// fp16/bf16 rows) for 4 or 2 tiles, so rows are kBT + 4 floats apart (4 banks): 8 rows x
// 4 tiles are conflict-free, 16 x 2 are 2-way (the price of whole 32-byte sectors in y;
// all NHWC reads were 4-way with 32 channels per warp).
// Measured (one H200, `bash benchmarks/device_run.sh` on commit a95939d, this kernel
// unchanged since: benchmarks/results/2026-12-04_H200_a95939d.json, batch 64, CUDA-event medians),
// in effective TFLOP/s (the direct conv's FLOP count), fp32 NCHW + ReLU: F(2x2) 32.7-35.3
// on conv1_2 to conv3_1 (cuDNN's fp32, TF32 off: 35.4-39.3; our direct: 26.2-34.0),
// F(4x4) 27.7-29.8; 16-bit the same (the GEMM runs on the CUDA cores; not profiled).
// Neither is "auto"'s pick (a looser error bound; in 16 bits the tensor-core implicit GEMM
// is 11-12x faster).
#pragma once

#include "numeric.cuh"
#include "winograd_transforms.cuh"

namespace vk {
namespace VK_KERNEL_NS {

template <int M>
struct Conv3x3WinogradTiling;

template <>
struct Conv3x3WinogradTiling<2> {
  static constexpr int kThreads = 256, kBT = 32, kBK = 32, kChunkC = 8;
};
template <>
struct Conv3x3WinogradTiling<4> {
  static constexpr int kThreads = 288, kBT = 16, kBK = 32, kChunkC = 8;
};

template <int M>
struct Conv3x3WinogradLayout : Conv3x3WinogradTiling<M> {
  using B = Conv3x3WinogradTiling<M>;
  static constexpr int kAlpha = M + 2, kP = kAlpha * kAlpha;
  static constexpr int kThreadT = 8, kThreadK = 8;  // tiles x output channels per thread
  static constexpr int kTG = B::kBT / kThreadT, kKG = B::kBK / kThreadK;
  static constexpr int kVStride = B::kBT + 4, kUStride = B::kBK + 4;
  // A channel's V plane: kP rows of kVStride, then padding chosen per layout for the
  // stage-1 stores (header: bank conflicts): NHWC's warps store 8 channels x 4 tiles, so
  // planes 4 or 20 floats past a multiple of 32 (F(2x2): 576 -> 580, F(4x4): 720 -> 724);
  // NCHW's F(4x4) warps store 2 channels x 16 tiles, so 16 past (720).
  static constexpr int kVPlaneNchw = kP * kVStride + (kP * kVStride % 32 == 0 ? 4 : 0);
  static constexpr int kVPlaneNhwc = kP * kVStride + 4;
  static constexpr int kVPlaneMax = kVPlaneNchw > kVPlaneNhwc ? kVPlaneNchw : kVPlaneNhwc;
  static constexpr int kVFloats = B::kChunkC * kVPlaneMax;
  static constexpr int kUFloats = B::kChunkC * kP * kUStride;
  // s_m (after the last chunk): the sums of position p and output channel k in row
  // p * kBK + k, tiles along it; rows kMStrideNchw / kMStrideNhwc floats apart and each
  // group of 8 rows shifted by m_skew (header: bank conflicts).
  static constexpr int kMStrideNchw = B::kBT, kMStrideNhwc = B::kBT + 4;
  __host__ __device__ static constexpr int m_skew(int row) {
    return 4 * (row / 8 % 2) + 16 * (row / 16);
  }
  static constexpr int kMFloats = kP * B::kBK * kMStrideNhwc + m_skew(kP * B::kBK - 1);
  static constexpr int kSmemFloats = kVFloats + kUFloats > kMFloats ? kVFloats + kUFloats : kMFloats;
  static constexpr unsigned kSmemBytes = kSmemFloats * sizeof(float);
  static_assert(B::kThreads == kP * kTG * kKG, "one position x 8 tiles x 8 K per thread");
  static_assert(kVFloats % 4 == 0 && kVPlaneNchw % 4 == 0 && kVPlaneNhwc % 4 == 0 && kVStride % 4 == 0 &&
                    kUStride % 4 == 0 && kMStrideNchw % 4 == 0 && kMStrideNhwc % 4 == 0,
                "float4 accesses stay 16-byte aligned");
  static_assert(B::kBK % 16 == 0, "a warp's epilogue reads (8 or 16 channels) stay in one 8-row group pair");
};

template <class Index>
struct Conv3x3WinogradParams {
  Index N, C, H, W, K;
  Index tiles_h, tiles_w, tiles, k_groups;  // tiles = N * tiles_h * tiles_w
  Index xs_n, xs_c, xs_h, xs_w;             // x strides in elements
  Index ys_n, ys_k, ys_h, ys_w;             // y strides in elements (y pooled or not)
  int relu, pool, channels_inner;
  // NCHW with W % M == 0 and y aligned: a tile's output row (pooled: M/2 columns) is one
  // vector store, so a warp's lanes (consecutive tiles along W) write consecutive
  // elements: whole sectors, where single elements M (pooled M/2) columns apart cost M
  // (M/2) times the sectors.
  int store_rows;
};

// U[p][c][k] = (G weight[k][c] G^T)[p], fp32; one thread per (c, k), k fastest.
template <int M, class T>
__global__ void __launch_bounds__(256)
    winograd_filter_transform_kernel(const T* __restrict__ w, float* __restrict__ u, const int64_t K,
                                     const int64_t C) {
  constexpr int a = M + 2;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= K * C) return;  // no barrier in this kernel
  const int64_t k = i % K, c = i / K;
  float g[3][3];
  const T* wp = w + (k * C + c) * 9;
#pragma unroll
  for (int r = 0; r < 3; ++r)
#pragma unroll
    for (int s = 0; s < 3; ++s) g[r][s] = to_float(ld_global(wp + (r * 3 + s)));
  float t[a][a];
  winograd_filter_transform<M>(g, t);
#pragma unroll
  for (int r = 0; r < a; ++r)
#pragma unroll
    for (int s = 0; s < a; ++s) st_global(u + (((r * a + s) * C + c) * K + k), t[r][s]);
}

template <int M, class T, class Index>
__global__ void __launch_bounds__(Conv3x3WinogradTiling<M>::kThreads)
    conv3x3_winograd_kernel(const T* __restrict__ x, const float* __restrict__ u, const T* __restrict__ bias,
                            T* __restrict__ y, const Conv3x3WinogradParams<Index> p) {
  using L = Conv3x3WinogradLayout<M>;
  constexpr int a = L::kAlpha, P = L::kP, BT = L::kBT, BK = L::kBK, CC = L::kChunkC;
  VK_DYNAMIC_SHARED(float, smem);
  float* s_v = smem;
  float* s_u = smem + L::kVFloats;
  float* s_m = smem;  // after the last chunk

  const Index kgroup = static_cast<Index>(blockIdx.x) % p.k_groups;
  const Index t0 = static_cast<Index>(blockIdx.x) / p.k_groups * BT, k0 = kgroup * BK;

  const int tid = threadIdx.x;
  const int pos = tid / (L::kTG * L::kKG), r = tid % (L::kTG * L::kKG);
  const int tg = r % L::kTG, kg = r / L::kTG;
  const int v_plane = p.channels_inner ? L::kVPlaneNhwc : L::kVPlaneNchw;  // floats per channel of s_v

  float acc[L::kThreadT][L::kThreadK];
#pragma unroll
  for (int i = 0; i < L::kThreadT; ++i)
#pragma unroll
    for (int j = 0; j < L::kThreadK; ++j) acc[i][j] = 0.f;

  for (Index c0 = 0; c0 < p.C; c0 += CC) {
    // Stage 1a: input tiles of the chunk, transformed. Item order follows the layout
    // (tiles fastest for NCHW, channels fastest for NHWC) to keep loads coalesced.
    for (int i = tid; i < CC * BT; i += L::kThreads) {
      int cc, t;
      if (p.channels_inner) {
        cc = i % CC, t = i / CC;
      } else {
        t = i % BT, cc = i / BT;
      }
      const Index c = c0 + cc, tile = t0 + t;
      float d[a][a];
      if (c < p.C && tile < p.tiles) {
        const Index tw = tile % p.tiles_w, rest = tile / p.tiles_w;
        const Index th = rest % p.tiles_h, n = rest / p.tiles_h;
        const Index h0 = th * M - 1, w0 = tw * M - 1;
        const T* xc = x + n * p.xs_n + c * p.xs_c;
        // The tile's rows and columns with their offsets; 0 outside the image, so a masked
        // load forms no offset past x (a select per row and column, not per element).
        Index row_off[a], col_off[a];
        bool row_in[a], col_in[a];
#pragma unroll
        for (int j = 0; j < a; ++j) {
          const Index h = h0 + j, ww = w0 + j;
          row_in[j] = h >= 0 && h < p.H, col_in[j] = ww >= 0 && ww < p.W;
          row_off[j] = row_in[j] ? h * p.xs_h : 0, col_off[j] = col_in[j] ? ww * p.xs_w : 0;
        }
#pragma unroll
        for (int rr = 0; rr < a; ++rr)
#pragma unroll
          for (int ss = 0; ss < a; ++ss)
            d[rr][ss] = to_float(ld_global(xc + (row_off[rr] + col_off[ss]), row_in[rr] && col_in[ss]));
      } else {
#pragma unroll
        for (int rr = 0; rr < a; ++rr)
#pragma unroll
          for (int ss = 0; ss < a; ++ss) d[rr][ss] = 0.f;
      }
      float v[a][a];
      winograd_input_transform<M>(d, v);
#pragma unroll
      for (int rr = 0; rr < a; ++rr)
#pragma unroll
        for (int ss = 0; ss < a; ++ss) st_shared(s_v + cc * v_plane + (rr * a + ss) * L::kVStride + t, v[rr][ss]);
    }
    // Stage 1b: the chunk's U slab, K fastest (coalesced rows of U's (P, C, K) layout).
    for (int i = tid; i < CC * P * BK; i += L::kThreads) {
      const int kk = i % BK, rest = i / BK, cc = rest % CC, pp = rest / CC;
      const Index c = c0 + cc, k = k0 + kk;
      const bool inside = c < p.C && k < p.K;
      st_shared(s_u + (cc * P + pp) * L::kUStride + kk, ld_global(u + (inside ? (pp * p.C + c) * p.K + k : 0), inside));
    }
    __syncthreads();

    // Stage 2: the batched GEMM over this chunk's channels (a short last chunk stops at
    // C: the bound is block-uniform).
    const int chunk = p.C - c0 < CC ? static_cast<int>(p.C - c0) : CC;
    for (int cc = 0; cc < chunk; ++cc) {
      const float4* vp =
          reinterpret_cast<const float4*>(s_v + cc * v_plane + pos * L::kVStride + tg * L::kThreadT);
      const float4* up = reinterpret_cast<const float4*>(s_u + (cc * P + pos) * L::kUStride + kg * L::kThreadK);
      const float4 va = ld_shared(vp), vb = ld_shared(vp + 1), ua = ld_shared(up), ub = ld_shared(up + 1);
      const float vt[L::kThreadT] = {va.x, va.y, va.z, va.w, vb.x, vb.y, vb.z, vb.w};
      const float uk[L::kThreadK] = {ua.x, ua.y, ua.z, ua.w, ub.x, ub.y, ub.z, ub.w};
#pragma unroll
      for (int i = 0; i < L::kThreadT; ++i)
#pragma unroll
        for (int j = 0; j < L::kThreadK; ++j) acc[i][j] = fmaf(vt[i], uk[j], acc[i][j]);
    }
    __syncthreads();  // the next stage (or the M dump) overwrites what this one read
  }

  // The P sums of each (tile, k) to shared memory: s_m row p * BK + k, column t.
  const int m_stride = p.channels_inner ? L::kMStrideNhwc : L::kMStrideNchw;
#pragma unroll
  for (int j = 0; j < L::kThreadK; ++j) {
    const int row = pos * BK + kg * L::kThreadK + j;
    float4* mp = reinterpret_cast<float4*>(s_m + row * m_stride + L::m_skew(row) + tg * L::kThreadT);
    st_shared(mp, make_float4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
    st_shared(mp + 1, make_float4(acc[4][j], acc[5][j], acc[6][j], acc[7][j]));
  }
  __syncthreads();

  // Output transform and epilogue, one (tile, k) item at a time: tiles fastest for NCHW;
  // for NHWC, runs of one 32-byte sector of channels (8 fp32, 16 fp16/bf16) per tile, so
  // a warp stores whole sectors and reads 4 (2) tiles x 8 (16) rows of s_m.
  constexpr int kRun = 32 / static_cast<int>(sizeof(T));
  static_assert(BK % kRun == 0, "channel runs tile the block's K");
  for (int i = tid; i < BT * BK; i += L::kThreads) {
    int t, kk;
    if (p.channels_inner) {
      kk = i % kRun + kRun * (i / (kRun * BT)), t = i / kRun % BT;
    } else {
      t = i % BT, kk = i / BT;
    }
    const Index tile = t0 + t, k = k0 + kk;
    float mm[a][a];  // read whether or not (tile, k) is in y: a warp's lanes make the same ld_shared calls
#pragma unroll
    for (int rr = 0; rr < a; ++rr)
#pragma unroll
      for (int ss = 0; ss < a; ++ss) {
        const int row = (rr * a + ss) * BK + kk;
        mm[rr][ss] = ld_shared(s_m + row * m_stride + L::m_skew(row) + t);
      }
    if (tile >= p.tiles || k >= p.K) continue;
    float o[M][M];
    winograd_output_transform<M>(mm, o);
    const float bk = bias != nullptr ? to_float(ld_global(bias + k)) : 0.f;
#pragma unroll
    for (int rr = 0; rr < M; ++rr)
#pragma unroll
      for (int ss = 0; ss < M; ++ss) {
        const float v = o[rr][ss] + bk;
        o[rr][ss] = (p.relu && v < 0.f) ? 0.f : v;  // ReLU(NaN) = NaN, as torch
      }
    const Index tw = tile % p.tiles_w, rest = tile / p.tiles_w;
    const Index th = rest % p.tiles_h, n = rest / p.tiles_h;
    const Index h0 = th * M, w0 = tw * M;
    T* yk = y + n * p.ys_n + k * p.ys_k;
    if (p.pool) {  // stored where the whole window exists: then (h/2, ww/2) is in y
      float m[M / 2][M / 2];
#pragma unroll
      for (int pr = 0; pr < M / 2; ++pr)
#pragma unroll
        for (int pc = 0; pc < M / 2; ++pc)
          m[pr][pc] = max_step(max_step(max_step(o[2 * pr][2 * pc], o[2 * pr][2 * pc + 1]), o[2 * pr + 1][2 * pc]),
                               o[2 * pr + 1][2 * pc + 1]);
#pragma unroll
      for (int pr = 0; pr < M / 2; ++pr) {
        const Index h = h0 + 2 * pr;
        if (p.store_rows) {  // W % M == 0: every window's columns exist
          Vec<T, M / 2> v;
#pragma unroll
          for (int pc = 0; pc < M / 2; ++pc) v.v[pc] = from_float<T>(m[pr][pc]);
          const bool active = h + 1 < p.H;
          st_global(reinterpret_cast<Vec<T, M / 2>*>(yk + (active ? (h / 2) * p.ys_h + w0 / 2 : 0)), v, active);
        } else {
#pragma unroll
          for (int pc = 0; pc < M / 2; ++pc) {
            const Index ww = w0 + 2 * pc;
            const bool active = h + 1 < p.H && ww + 1 < p.W;
            st_global(yk + (active ? (h / 2) * p.ys_h + (ww / 2) * p.ys_w : 0), from_float<T>(m[pr][pc]), active);
          }
        }
      }
    } else if (p.store_rows) {  // W % M == 0: every tile's columns exist
#pragma unroll
      for (int rr = 0; rr < M; ++rr) {
        Vec<T, M> v;
#pragma unroll
        for (int ss = 0; ss < M; ++ss) v.v[ss] = from_float<T>(o[rr][ss]);
        const bool active = h0 + rr < p.H;
        st_global(reinterpret_cast<Vec<T, M>*>(yk + (active ? (h0 + rr) * p.ys_h + w0 : 0)), v, active);
      }
    } else {
#pragma unroll
      for (int rr = 0; rr < M; ++rr)
#pragma unroll
        for (int ss = 0; ss < M; ++ss) {
          const bool active = h0 + rr < p.H && w0 + ss < p.W;
          st_global(yk + (active ? (h0 + rr) * p.ys_h + (w0 + ss) * p.ys_w : 0), from_float<T>(o[rr][ss]), active);
        }
    }
  }
}

}  // namespace VK_KERNEL_NS
}  // namespace vk
