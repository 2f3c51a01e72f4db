// conv3x3_implicit_gemm: y = [maxpool2x2](ReLU?(conv2d(x, weight, bias, stride 1,
// padding 1))) on tensor cores with fp32 accumulation: fp16/bf16 storage with
// mma.sync.m16n8k16, or fp32 storage with TF32 math (mma.sync.m16n8k8.tf32, every
// operand rounded to TF32 by cvt.rna after its ldmatrix, as cuDNN's TF32 rounds its
// inputs). x (N, H, W, C) and y (N, H, W, K) or (N, H/2, W/2, K) are NHWC
// (channels_last); the weight is given as (K, 3, 3, C). C is a multiple of 8 (the op
// pads VGG's C=3 first layer with zeros).
//
// GEMM view: M = N*H*W output pixels, N_gemm = K output channels, K_gemm = 9*C, ordered
// (tap r*3+s, channel c) so a 16-byte chunk of channels (8 halves or 4 floats) is one
// contiguous load of x (or a zero-filled one at the image edge: the im2col matrix is
// never materialised).
// Tiling: a block of 256 threads (8 warps, 2 along M x 4 along N) computes a 128 x BN
// tile (BN = 128, or 64 when K <= 64); the 128 pixels are an 8 x 16 spatial block of
// one image (origin even), so every 2x2 pool window lies inside the tile. Each warp
// owns 64 x BN/4: 4 m16 x BN/32 n8 mma tiles, fragments read by ldmatrix.
// K_gemm advances one 64-byte slice at a time (kBK = 32 fp16/bf16 or 16 fp32 elements)
// through a 3-stage cp.async pipeline that is byte-for-byte the same for both element
// sizes:
//   A stage [128] and B stage [BN] rows of 64 bytes + 16 bytes padding = 80 bytes
//   (40 halves or 20 floats), so the 8 row addresses of an ldmatrix fall in 8 distinct
//   bank groups; each row is 4 cp.async chunks of 16 bytes (8 halves or 4 floats);
// and each slice is 2 mma k-steps: m16n8k16 (16 halves) or m16n8k8 (8 floats). ldmatrix
// (b16) serves both: for 32-bit elements an 8-row x 16-byte matrix gives lane (g, t)
// the float [g][t], so the x4 load that yields the f16 A fragment (rows lane % 16,
// chunk lane / 16) yields exactly the tf32 A fragment A[g][t], A[g+8][t], A[g][t+4],
// A[g+8][t+4], and the B loads from [n][k] rows give b0 = B[t][g], b1 = B[t+4][g].
// Dynamic shared memory (61440 bytes), later reused by the epilogue as an fp32
// [128][BN+4] tile: + bias, ReLU (NaN kept), then either NHWC stores of 8 channels (one
// 16-byte vector for fp16/bf16, two for fp32) or the 2x2 max (torch's NaN rule, window
// order) and the pooled stores.
// Measurement: pending a GPU session (benchmarks/); tile sizes are a first choice, not
// yet tuned per layer.
#pragma once

#include "numeric.cuh"
#include "tensor_core.cuh"

namespace vk {
namespace VK_KERNEL_NS {

// T: the storage type (__half, __nv_bfloat16 or float); the shared-memory layout in
// bytes is the same for all three.
template <class T, int kBN>
struct ImplicitGemmTiling {
  static constexpr int kThreads = 256;
  static constexpr int kWarpsM = 2, kWarpsN = 4;
  static constexpr int kTileH = 8, kTileW = 16;  // the block's pixels: 8 x 16 = kBM
  static constexpr int kChunk = 16 / int(sizeof(T));  // elements per 16-byte cp.async chunk
  static constexpr int kBM = kTileH * kTileW, kBK = 4 * kChunk, kStages = 3;  // kBK: a 64-byte K slice
  static constexpr int kStep = kBK / 2;  // K per mma: 16 (m16n8k16) or 8 (m16n8k8 tf32)
  static constexpr int kWarpM = kBM / kWarpsM, kWarpN = kBN / kWarpsN;
  static constexpr int kMTiles = kWarpM / 16, kNTiles = kWarpN / 8;
  static constexpr int kRow = kBK + kChunk;  // elements per padded shared row (80 bytes)
  static constexpr int kAStage = kBM * kRow, kBStage = kBN * kRow;
  static constexpr int kCStride = kBN + 4;  // floats per epilogue row
  static constexpr size_t kPipeBytes = size_t(kStages) * (kAStage + kBStage) * sizeof(T);
  static constexpr size_t kEpilogueBytes = size_t(kBM) * kCStride * 4;
  static constexpr size_t kSmemBytes = kPipeBytes > kEpilogueBytes ? kPipeBytes : kEpilogueBytes;
  static_assert(sizeof(T) == 2 || sizeof(T) == 4, "16- or 32-bit elements");
  static_assert(kRow * sizeof(T) == 80, "64-byte rows + 16 bytes of padding");
  static_assert(kThreads == 32 * kWarpsM * kWarpsN, "8 warps");
  static_assert(kNTiles % 2 == 0, "B fragments are loaded two n8 tiles per ldmatrix.x4");
  static_assert((kBN * 4) % kThreads == 0, "B stage copies divide among the threads");
};

template <class Index>
struct ImplicitGemmParams {
  Index N, C, H, W, K;  // C: a multiple of 8
  Index tiles_h, tiles_w;
  int relu, pool;
};

template <class T, MmaType kMma, int kBN, class Index>
__global__ void __launch_bounds__(256)
    conv3x3_implicit_gemm_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                                 T* __restrict__ y, const ImplicitGemmParams<Index> p) {
  using L = ImplicitGemmTiling<T, kBN>;
  static_assert((kMma == MmaType::tf32) == (sizeof(T) == 4), "tf32 math for fp32 storage, f16/bf16 for halves");
  VK_DYNAMIC_SHARED(unsigned char, smem);
  T* const a_smem = reinterpret_cast<T*>(smem);
  T* const b_smem = a_smem + L::kStages * L::kAStage;

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int warp_m = warp % L::kWarpsM, warp_n = warp / L::kWarpsM;

  Index b = blockIdx.x;
  const Index tw = b % p.tiles_w;
  b /= p.tiles_w;
  const Index th = b % p.tiles_h;
  const Index n = b / p.tiles_h;
  const Index h0 = th * L::kTileH, w0 = tw * L::kTileW;
  const Index k0 = static_cast<Index>(blockIdx.y) * kBN;
  const Index kd = 9 * p.C;  // K_gemm
  const int k_tiles = static_cast<int>((kd + L::kBK - 1) / L::kBK);

  // A loads: this thread copies 16-byte chunk (tid % 4) of tile rows tid/4 and tid/4 + 64.
  const int a_chunk = tid % 4;
  Index a_h[2], a_w[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = tid / 4 + 64 * i;
    a_h[i] = h0 + row / L::kTileW;
    a_w[i] = w0 + row % L::kTileW;
  }
  const T* const xn = x + n * p.H * p.W * p.C;

  auto load_stage = [&](int stage, int kt) {
    T* const as = a_smem + stage * L::kAStage;
    T* const bs = b_smem + stage * L::kBStage;
    const Index ka = static_cast<Index>(kt) * L::kBK + a_chunk * L::kChunk;
    const Index tap = ka / p.C, c = ka % p.C;
    const Index r = tap / 3, s = tap % 3;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const Index hh = a_h[i] + r - 1, ww = a_w[i] + s - 1;
      const bool ok = ka < kd && a_h[i] < p.H && a_w[i] < p.W && hh >= 0 && hh < p.H && ww >= 0 && ww < p.W;
      const T* src = ok ? xn + (hh * p.W + ww) * p.C + c : x;
      cp_async_16(as + (tid / 4 + 64 * i) * L::kRow + a_chunk * L::kChunk, src, ok ? 16 : 0);
    }
#pragma unroll
    for (int j = 0; j < kBN * 4 / L::kThreads; ++j) {
      const int idx = tid + L::kThreads * j, row = idx / 4, chunk = idx % 4;
      const Index kb = static_cast<Index>(kt) * L::kBK + chunk * L::kChunk, k = k0 + row;
      const bool ok = k < p.K && kb < kd;
      cp_async_16(bs + row * L::kRow + chunk * L::kChunk, ok ? w + k * kd + kb : w, ok ? 16 : 0);
    }
  };

  float acc[L::kMTiles][L::kNTiles][4];
#pragma unroll
  for (int mt = 0; mt < L::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < L::kNTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.f;

  // Pipeline: stages 0..S-2 in flight before the loop; each iteration waits for its
  // stage, refills the one computed last iteration, and computes. One commit per
  // iteration (empty groups past the end) keeps the group count uniform.
#pragma unroll
  for (int s = 0; s < L::kStages - 1; ++s) {
    if (s < k_tiles) load_stage(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<L::kStages - 2>();
    __syncthreads();
    const int next = kt + L::kStages - 1;
    if (next < k_tiles) load_stage(next % L::kStages, next);
    cp_async_commit();

    const T* const as = a_smem + (kt % L::kStages) * L::kAStage;
    const T* const bs = b_smem + (kt % L::kStages) * L::kBStage;
#pragma unroll
    for (int kk = 0; kk < L::kBK; kk += L::kStep) {  // 2 mma k-steps per 64-byte slice
      uint32_t a[L::kMTiles][4], bf[L::kNTiles][2];
#pragma unroll
      for (int mt = 0; mt < L::kMTiles; ++mt)
        ldmatrix<4>(a[mt],
                    as + (warp_m * L::kWarpM + mt * 16 + lane % 16) * L::kRow + kk + (lane / 16) * L::kChunk);
#pragma unroll
      for (int np = 0; np < L::kNTiles / 2; ++np) {
        uint32_t r[4];
        ldmatrix<4>(r, bs + (warp_n * L::kWarpN + np * 16 + lane % 8 + (lane / 16) * 8) * L::kRow + kk +
                           ((lane / 8) % 2) * L::kChunk);
        bf[2 * np][0] = r[0];
        bf[2 * np][1] = r[1];
        bf[2 * np + 1][0] = r[2];
        bf[2 * np + 1][1] = r[3];
      }
      if constexpr (kMma == MmaType::tf32) {
        // fp32 -> tf32, round to nearest (ties away), once per fragment element.
#pragma unroll
        for (int mt = 0; mt < L::kMTiles; ++mt)
#pragma unroll
          for (int i = 0; i < 4; ++i) a[mt][i] = to_tf32(__uint_as_float(a[mt][i]));
#pragma unroll
        for (int nt = 0; nt < L::kNTiles; ++nt)
#pragma unroll
          for (int i = 0; i < 2; ++i) bf[nt][i] = to_tf32(__uint_as_float(bf[nt][i]));
#pragma unroll
        for (int mt = 0; mt < L::kMTiles; ++mt)
#pragma unroll
          for (int nt = 0; nt < L::kNTiles; ++nt) mma_m16n8k8_tf32(acc[mt][nt], a[mt], bf[nt], acc[mt][nt]);
      } else {
#pragma unroll
        for (int mt = 0; mt < L::kMTiles; ++mt)
#pragma unroll
          for (int nt = 0; nt < L::kNTiles; ++nt) mma_m16n8k16<kMma>(acc[mt][nt], a[mt], bf[nt], acc[mt][nt]);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the pipeline's shared memory becomes the epilogue tile

  // Epilogue 1: accumulators + bias, ReLU -> fp32 tile [pixel][channel].
  float* const c_smem = reinterpret_cast<float*>(smem);
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int nt = 0; nt < L::kNTiles; ++nt) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int col = warp_n * L::kWarpN + nt * 8 + 2 * t + j;
      const Index k = k0 + col;
      const float bk = (bias != nullptr && k < p.K) ? to_float(bias[k]) : 0.f;
#pragma unroll
      for (int mt = 0; mt < L::kMTiles; ++mt)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int row = warp_m * L::kWarpM + mt * 16 + g + 8 * half;
          const float v = acc[mt][nt][2 * half + j] + bk;
          c_smem[row * L::kCStride + col] = (p.relu && v < 0.f) ? 0.f : v;  // ReLU(NaN) = NaN
        }
    }
  }
  __syncthreads();

  // Epilogue 2: 8 channels per item, stored as one vector (16 bytes, or 32 for fp32) when K allows.
  constexpr int kGroups = kBN / 8;
  const bool vector_store = p.K % 8 == 0;
  auto store8 = [&](T* dst, Index k, const float* v) {
    if (vector_store) {
      Vec<T, 8> out;
#pragma unroll
      for (int j = 0; j < 8; ++j) out.v[j] = from_float<T>(v[j]);
      *reinterpret_cast<Vec<T, 8>*>(dst) = out;
    } else {
      for (int j = 0; j < 8 && k + j < p.K; ++j) dst[j] = from_float<T>(v[j]);
    }
  };
  if (!p.pool) {
    for (int idx = tid; idx < L::kBM * kGroups; idx += L::kThreads) {
      const int m = idx / kGroups, grp = idx % kGroups;
      const Index h = h0 + m / L::kTileW, ww = w0 + m % L::kTileW, k = k0 + grp * 8;
      if (h < p.H && ww < p.W && k < p.K)
        store8(y + ((n * p.H + h) * p.W + ww) * p.K + k, k, c_smem + m * L::kCStride + grp * 8);
    }
  } else {
    const Index ho_n = p.H / 2, wo_n = p.W / 2;
    constexpr int kPooled = (L::kTileH / 2) * (L::kTileW / 2);
    for (int idx = tid; idx < kPooled * kGroups; idx += L::kThreads) {
      const int pm = idx / kGroups, grp = idx % kGroups;
      const int ph = pm / (L::kTileW / 2), pw = pm % (L::kTileW / 2);
      const Index ho = h0 / 2 + ph, wo = w0 / 2 + pw, k = k0 + grp * 8;
      if (ho < ho_n && wo < wo_n && k < p.K) {
        const float* c00 = c_smem + ((2 * ph) * L::kTileW + 2 * pw) * L::kCStride + grp * 8;
        const float* c01 = c00 + L::kCStride;
        const float* c10 = c00 + L::kTileW * L::kCStride;
        const float* c11 = c10 + L::kCStride;
        float v[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = max_step(max_step(max_step(c00[j], c01[j]), c10[j]), c11[j]);
        store8(y + ((n * ho_n + ho) * wo_n + wo) * p.K + k, k, v);
      }
    }
  }
}

}  // namespace VK_KERNEL_NS
}  // namespace vk
