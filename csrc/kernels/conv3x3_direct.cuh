// conv3x3_direct: y = [maxpool2x2](ReLU?(conv2d(x, weight, bias, stride 1, padding 1))),
// the whole chain in one kernel that writes only the final y. x (N, C, H, W), weight
// (K, C, 3, 3), bias (K) or none; y (N, K, H, W), or (N, K, H/2, W/2) with the pool
// (floor mode). CUDA cores only; products summed in fp32 with fmaf, one rounding to
// the element type at the store. The rung every other algorithm is checked against.
//
// Tiling: a block of 256 threads computes a 16x16 output-pixel tile of one image for
// 32 output channels (blockIdx.x = ((n * tiles_h + th) * tiles_w + tw) * k_groups + kg,
// the K groups of one tile adjacent, so their input tile is read from L2). Thread t
// owns a 2x2 pixel block (tx = t%8, ty = (t%64)/8) for 8 output channels (t/64, warp-
// uniform): 32 fp32 accumulators. The 2x2 block is one pool window, so the fused
// max-pool is a register max; the tile origin is even, so windows never straddle.
// Input channels are consumed in chunks of 8: per chunk all threads stage
//   s_in [8][18][24] fp32: the 18x18 input tile with its 1-pixel halo (zeros outside
//                          the image and past C: padding costs no copy of x); rows
//                          of 24 so a half-warp's float2 reads of two rows hit
//                          distinct banks; channel planes 436 floats apart (432 + 4:
//                          NHWC staging stores 8 channels x 4 pixels per warp, which
//                          at 432 (16 mod 32) fell 4 to a bank);
//   s_w  [8][9][36]  fp32: the chunk's weights, tap-major, the block's 32 K innermost
//                          (rows of 36, so a warp staging 8 rows x 4 K stores to 32
//                          distinct banks), so a thread's 8 K are two float4 reads,
//                          broadcast to its warp;
// in one dynamic shared buffer (24,320 bytes), then each thread reads its 4x4 input
// patch per channel into registers and does 9 taps x 2x2 pixels x 8 K fmaf. Barriers
// bracket each stage. Epilogue: + bias, ReLU (NaN kept), the 2x2 max with torch's NaN
// rule (max_step, window order), convert, store if inside y.
// Bank conflicts, counted by the emulator (tests/test_conv3x3.py, against an independent
// count of the same addresses): the hot loop's reads have none; per chunk a block's 153
// staging store instructions cost 162 wavefronts for NHWC x and 234 for NCHW (NCHW's
// s_in rows are 18 wide, so a warp writes two rows 24 floats apart: 2-way). s_w's 72
// stores are conflict-free (they cost 256 while a warp staged 32 rows of one k: 4-way;
// 346 and 418 in all). Against that, ~18k warp-instructions of fmaf per chunk, so the
// staging was never the bound: the change saves ~1% of a chunk's issue slots (counted).
// Global memory, counted by the emulator (tests/test_global_sectors.py: 32-byte sectors
// per warp-wide access against ceil(bytes / 32)): NHWC fp32 staging reads whole sectors
// (fp16 ~1.6x: a chunk of 8 channels is half a sector); NCHW's rows of 18 with the halo
// ~1.25x (fp32). Stores by Conv3x3DirectStore: NCHW
// column pairs whole sectors (fp32 and fp16; the pool's single elements: fp32 whole,
// fp16 2x); NHWC 8-channel vectors 2x, where single elements (the previous epilogue, and
// still K % 8 != 0) cost 8x (fp32) / 16x (fp16): 4x / 8x fewer store sectors per output.
// Predicted to matter little (the kernel is FMA-bound: ~288 C FMAs per thread against 32
// stores), not measured. Registers (ptxas, nvcc 13, sm_90a): 80 for int32 offsets (3 blocks/SM
// by registers; 102 and 2 blocks/SM before masked lanes formed offset 0, which also
// ended nvcc hoisting the epilogue's addresses), 108-112 for int64. No spills.
// Addressing is by element strides, so NCHW and NHWC (channels_last) share one
// instantiation per (element type, index type); the load order of the staging loop
// follows the layout (W fastest for NCHW, C fastest for NHWC) to keep loads coalesced.
// Index is int32 when every offset of x, weight and y fits, else int64. A lane whose
// access is masked off (halo, past C, K, H or W) forms offset 0, so every offset formed,
// not only every one dereferenced, lies inside its tensor (no int32 overflow).
// Measured (one H200, `bash benchmarks/device_run.sh` on commit a95939d, this kernel
// unchanged since: benchmarks/results/2026-12-04_H200_a95939d.json, batch 64, CUDA-event medians),
// fp32 NCHW + ReLU: 33.5-34.0 TFLOP/s (50-51% of the 67 TFLOP/s fp32 peak) on conv1_2 to
// conv2_2, 26.2 (39%) on conv3_1, against cuDNN's fp32 (TF32 off) 35.4-39.3 (53-59%);
// conv1_1 (C = 3) 18.6 against cuDNN's 6.7. fp16/bf16 (fp32 sums, the same loop) run
// the same 25-34 TFLOP/s: the tensor-core algorithms are their path.
#pragma once

#include "numeric.cuh"

namespace vk {
namespace VK_KERNEL_NS {

struct Conv3x3DirectTiling {
  static constexpr int kThreads = 256;
  static constexpr int kTileH = 16, kTileW = 16;     // output pixels per block
  static constexpr int kBlockK = 32, kThreadK = 8;   // output channels per block / thread
  static constexpr int kChunkC = 8;                  // input channels per shared stage
  static constexpr int kInH = kTileH + 2, kInW = kTileW + 2, kInStride = 24;
  static constexpr int kInPlane = kInH * kInStride + 4;  // 20 mod 32: see the header
  static constexpr int kInFloats = kChunkC * kInPlane;
  static constexpr int kWRows = kChunkC * 9, kWStride = kBlockK + 4;  // s_w: (c, tap) rows of K
  static constexpr int kWFloats = kWRows * kWStride;
  static constexpr unsigned kSmemBytes = (kInFloats + kWFloats) * sizeof(float);
  static_assert(kThreads == (kTileH / 2) * (kTileW / 2) * (kBlockK / kThreadK), "one 2x2 x 8K block per thread");
  static_assert(kInFloats % 4 == 0, "s_w must stay 16-byte aligned");
  static_assert(kThreads % 32 == 0 && kWRows % 8 == 0 && kBlockK % 4 == 0 && kWStride % 32 == 4,
                "s_w staging: a warp's 8 rows x 4 k in 32 distinct banks");
};

// How the epilogue stores a thread's 2x2 pixels x 8 channels (the dispatch picks the
// widest that y's layout, K, W and alignment allow; the emulator counts the sectors):
//   scalars:      one element per store. NHWC: 32 lanes, 32 pixels: 32 sectors a store.
//   column pairs: NCHW, W even: a row's 2 pixels as one 2-element vector; a warp's 8
//                 lanes per row write 16 consecutive elements: whole sectors.
//   channels:     NHWC, K % 8 == 0: a pixel's 8 channels as 16-byte vectors (two for
//                 fp32): 32 pixels a store, 16 bytes each, 2 sectors per 32 bytes written
//                 where scalars cost 8 (fp32) or 16 (fp16/bf16).
enum Conv3x3DirectStore : int { kDirectStoreScalars = 0, kDirectStoreColumnPairs = 1, kDirectStoreChannels = 2 };

template <class Index>
struct Conv3x3DirectParams {
  Index N, C, H, W, K;
  Index tiles_h, tiles_w, k_groups;
  Index xs_n, xs_c, xs_h, xs_w;  // x strides in elements
  Index ys_n, ys_k, ys_h, ys_w;  // y strides in elements (y pooled or not)
  int relu, pool, channels_inner;
  int store;  // Conv3x3DirectStore
};

// 8 consecutive channels of one pixel (16-byte aligned) in 16-byte stores.
template <class T>
__device__ __forceinline__ void store_channels8(T* p, const float (&v)[8], bool active) {
  constexpr int kPer = 16 / static_cast<int>(sizeof(T));
#pragma unroll
  for (int part = 0; part < 8 / kPer; ++part) {
    Vec<T, kPer> out;
#pragma unroll
    for (int j = 0; j < kPer; ++j) out.v[j] = from_float<T>(v[part * kPer + j]);
    st_global(reinterpret_cast<Vec<T, kPer>*>(p + part * kPer), out, active);
  }
}

template <class T, class Index>
__global__ void __launch_bounds__(256)
    conv3x3_direct_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                          T* __restrict__ y, const Conv3x3DirectParams<Index> p) {
  using L = Conv3x3DirectTiling;
  VK_DYNAMIC_SHARED(float, smem);
  float* s_in = smem;
  float* s_w = smem + L::kInFloats;

  Index b = blockIdx.x;
  const Index kgroup = b % p.k_groups;
  b /= p.k_groups;
  const Index tw = b % p.tiles_w;
  b /= p.tiles_w;
  const Index th = b % p.tiles_h;
  const Index n = b / p.tiles_h;
  const Index h0 = th * L::kTileH, w0 = tw * L::kTileW, k0 = kgroup * L::kBlockK;

  const int tid = threadIdx.x;
  const int kg = tid / 64, tx = tid % 8, ty = (tid % 64) / 8;

  const T* xn = x + n * p.xs_n;
  float acc[L::kThreadK][2][2];
#pragma unroll
  for (int k = 0; k < L::kThreadK; ++k)
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) acc[k][i][j] = 0.f;

  for (Index c0 = 0; c0 < p.C; c0 += L::kChunkC) {
    // Stage the input tile with its halo; zeros outside the image and past C.
    for (int i = tid; i < L::kChunkC * L::kInH * L::kInW; i += L::kThreads) {
      int cc, r, s;
      if (p.channels_inner) {
        cc = i % L::kChunkC;
        const int t = i / L::kChunkC;
        s = t % L::kInW;
        r = t / L::kInW;
      } else {
        s = i % L::kInW;
        const int t = i / L::kInW;
        r = t % L::kInH;
        cc = t / L::kInH;
      }
      const Index c = c0 + cc, h = h0 + r - 1, ww = w0 + s - 1;
      const bool inside = c < p.C && h >= 0 && h < p.H && ww >= 0 && ww < p.W;
      const Index off = inside ? c * p.xs_c + h * p.xs_h + ww * p.xs_w : 0;  // masked: no offset past x
      const float v = to_float(ld_global(xn + off, inside));
      st_shared(s_in + cc * L::kInPlane + r * L::kInStride + s, v);
    }
    // Stage the weights tap-major: s_w row (cc * 9 + tap), the block's K innermost. A warp
    // stages 8 consecutive rows of 4 consecutive k (lane = 4 * row + k, mod 8 rows and 4
    // k): it reads 4 runs of 8 floats of (k, c, tap) order, the same 32-byte sectors as
    // one run of 32, and its stores, rows 36 floats apart, land in 32 distinct banks.
    for (int i = tid; i < L::kBlockK * L::kWRows; i += L::kThreads) {
      const int lane = i % 32, group = i / 32;
      const int row = group % (L::kWRows / 8) * 8 + lane / 4, kk = group / (L::kWRows / 8) * 4 + lane % 4;
      const int cc = row / 9, tap = row % 9;
      const Index k = k0 + kk, c = c0 + cc;
      const bool inside = k < p.K && c < p.C;
      const float v = to_float(ld_global(w + (inside ? (k * p.C + c) * 9 + tap : 0), inside));
      st_shared(s_w + (cc * 9 + tap) * L::kWStride + kk, v);
    }
    __syncthreads();

    // The last chunk (and the whole of C=3, VGG's first layer) may be short: its
    // channels past C are staged as zeros but not computed on (the bound is block-uniform).
    const int chunk = p.C - c0 < L::kChunkC ? static_cast<int>(p.C - c0) : L::kChunkC;
    for (int cc = 0; cc < chunk; ++cc) {
      float in[4][4];
      const float* ip = s_in + cc * L::kInPlane + 2 * ty * L::kInStride + 2 * tx;
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const float2 a = ld_shared(reinterpret_cast<const float2*>(ip + r * L::kInStride));
        const float2 c = ld_shared(reinterpret_cast<const float2*>(ip + r * L::kInStride + 2));
        in[r][0] = a.x;
        in[r][1] = a.y;
        in[r][2] = c.x;
        in[r][3] = c.y;
      }
#pragma unroll
      for (int tap = 0; tap < 9; ++tap) {
        const int r = tap / 3, s = tap % 3;
        const float4* wp = reinterpret_cast<const float4*>(s_w + (cc * 9 + tap) * L::kWStride + kg * L::kThreadK);
        const float4 wa = ld_shared(wp), wb = ld_shared(wp + 1);
        const float wk[L::kThreadK] = {wa.x, wa.y, wa.z, wa.w, wb.x, wb.y, wb.z, wb.w};
#pragma unroll
        for (int k = 0; k < L::kThreadK; ++k)
#pragma unroll
          for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 2; ++j) acc[k][i][j] = fmaf(in[i + r][j + s], wk[k], acc[k][i][j]);
      }
    }
    __syncthreads();  // the next stage overwrites what this one read
  }

  // Epilogue: bias, ReLU, pool, one conversion, store what lies inside y (the store
  // shape: see Conv3x3DirectStore).
  const Index h = h0 + 2 * ty, ww = w0 + 2 * tx, kk0 = k0 + kg * L::kThreadK;
#pragma unroll
  for (int k = 0; k < L::kThreadK; ++k) {
    const Index kk = kk0 + k;
    const float bk = (bias != nullptr && kk < p.K) ? to_float(ld_global(bias + kk)) : 0.f;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const float t = acc[k][i][j] + bk;
        acc[k][i][j] = (p.relu && t < 0.f) ? 0.f : t;  // ReLU(NaN) = NaN, as torch
      }
  }
  T* const yn = y + n * p.ys_n;
  if (p.pool) {  // the window's rows and columns all exist: (h/2, ww/2) is in y
    float m[L::kThreadK];
#pragma unroll
    for (int k = 0; k < L::kThreadK; ++k)
      m[k] = max_step(max_step(max_step(acc[k][0][0], acc[k][0][1]), acc[k][1][0]), acc[k][1][1]);
    const bool inside = h + 1 < p.H && ww + 1 < p.W;
    T* const yp = yn + (inside ? (h / 2) * p.ys_h + (ww / 2) * p.ys_w : 0);
    if (p.store == kDirectStoreChannels) {
      const bool active = inside && kk0 < p.K;
      store_channels8(yp + (active ? kk0 : 0), m, active);
    } else {
#pragma unroll
      for (int k = 0; k < L::kThreadK; ++k) {
        const bool active = inside && kk0 + k < p.K;
        st_global(yp + (active ? (kk0 + k) * p.ys_k : 0), from_float<T>(m[k]), active);
      }
    }
  } else if (p.store == kDirectStoreChannels) {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        float v[L::kThreadK];
#pragma unroll
        for (int k = 0; k < L::kThreadK; ++k) v[k] = acc[k][i][j];
        const bool active = h + i < p.H && ww + j < p.W && kk0 < p.K;
        store_channels8(yn + (active ? (h + i) * p.ys_h + (ww + j) * p.ys_w + kk0 : 0), v, active);
      }
  } else if (p.store == kDirectStoreColumnPairs) {
#pragma unroll
    for (int k = 0; k < L::kThreadK; ++k)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        Vec<T, 2> v;
        v.v[0] = from_float<T>(acc[k][i][0]);
        v.v[1] = from_float<T>(acc[k][i][1]);
        const bool active = h + i < p.H && ww < p.W && kk0 + k < p.K;
        st_global(reinterpret_cast<Vec<T, 2>*>(yn + (active ? (kk0 + k) * p.ys_k + (h + i) * p.ys_h + ww : 0)), v,
                  active);
      }
  } else {
#pragma unroll
    for (int k = 0; k < L::kThreadK; ++k)
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const bool active = h + i < p.H && ww + j < p.W && kk0 + k < p.K;
          st_global(yn + (active ? (kk0 + k) * p.ys_k + (h + i) * p.ys_h + (ww + j) * p.ys_w : 0),
                    from_float<T>(acc[k][i][j]), active);
        }
  }
}

}  // namespace VK_KERNEL_NS
}  // namespace vk
