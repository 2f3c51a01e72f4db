// The Winograd minimal-filtering transforms F(m x m, 3 x 3) for m = 2 and m = 4, the one
// copy of their constants: the CUDA kernels, the emulator and the op
// vggkern::_winograd_matrices (which the tests check the defining identity on) all read
// them from here.
//
// For an alpha x alpha input tile d (alpha = m + 2) and a 3x3 filter g, the m x m
// output of the valid 3x3 correlation of d with g is
//     Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A,
// U = G g G^T (alpha x alpha) the filter transform, V = B^T d B the input transform,
// M = sum over input channels of U ⊙ V, Y = A^T M A the output transform.
//
// F(2,3): the interpolation points 0, 1, -1, ∞ (Lavin & Gray 2015, "Fast Algorithms for
// Convolutional Neural Networks"); every constant is exact in fp32 (0, ±1, ±1/2).
// F(4,3): the standard points 0, ±1, ±2, ∞ (Lavin & Gray), not rescaled. Rescaling
// the points (neon did, to keep fp16 transforms in range) matters when the transforms
// and the products run in fp16; here they run in fp32, U is kept in fp32 and every
// value read from x is converted to fp32 first, so range is no issue and the standard
// matrices keep the fewest non-trivial coefficients. G holds 1/6, 1/12, 1/24, which
// are rounded to fp32 here: these rounded values are what the kernels use (and what
// _winograd_matrices returns).
//
// Coefficients come from constexpr functions with compile-time indices inside fully
// unrolled loops, so both compilers fold them; the apply_* helpers skip zero
// coefficients and turn ±1 into an add/subtract (nvcc cannot fold 0*x itself under
// IEEE rules, since 0*Inf = NaN). Sums are fp32 fmaf in a fixed order: GPU and
// emulator agree bit for bit.
#pragma once

#include "simt.cuh"

namespace vk {
namespace VK_KERNEL_NS {

template <int M>
struct Winograd;

template <>
struct Winograd<2> {
  static constexpr int kM = 2, kAlpha = 4, kP = 16;
  // B^T (alpha x alpha): V = B^T d B.
  __host__ __device__ static constexpr float bt(int i, int j) {
    constexpr float t[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
    return t[i][j];
  }
  // G (alpha x 3): U = G g G^T.
  __host__ __device__ static constexpr float g(int i, int j) {
    constexpr float t[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
    return t[i][j];
  }
  // A^T (m x alpha): Y = A^T M A.
  __host__ __device__ static constexpr float at(int i, int j) {
    constexpr float t[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
    return t[i][j];
  }
};

template <>
struct Winograd<4> {
  static constexpr int kM = 4, kAlpha = 6, kP = 36;
  __host__ __device__ static constexpr float bt(int i, int j) {
    constexpr float t[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                               {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
    return t[i][j];
  }
  __host__ __device__ static constexpr float g(int i, int j) {
    constexpr float t[6][3] = {{1.0f / 4, 0, 0},
                               {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                               {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                               {1.0f / 24, 1.0f / 12, 1.0f / 6},
                               {1.0f / 24, -1.0f / 12, 1.0f / 6},
                               {0, 0, 1}};
    return t[i][j];
  }
  __host__ __device__ static constexpr float at(int i, int j) {
    constexpr float t[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
    return t[i][j];
  }
};

// acc + c * v with c a compile-time constant: nothing for 0, an add or a subtract for ±1.
__device__ __forceinline__ float winograd_term(float acc, float c, float v) {
  if (c == 0.f) return acc;
  if (c == 1.f) return acc + v;
  if (c == -1.f) return acc - v;
  return fmaf(c, v, acc);
}

// out = L in L^T for a constant R x S matrix L (coefficients L::c(i, k)) and an S x S
// tile: each transform below is one of these, with L = B^T, G or A^T.
template <int R, int S, class L>
__device__ __forceinline__ void winograd_sandwich(const float (&in)[S][S], float (&out)[R][R]) {
  float t[R][S];  // L in
#pragma unroll
  for (int i = 0; i < R; ++i)
#pragma unroll
    for (int j = 0; j < S; ++j) {
      float s = 0.f;
#pragma unroll
      for (int k = 0; k < S; ++k) s = winograd_term(s, L::c(i, k), in[k][j]);
      t[i][j] = s;
    }
#pragma unroll
  for (int i = 0; i < R; ++i)
#pragma unroll
    for (int j = 0; j < R; ++j) {
      float s = 0.f;
#pragma unroll
      for (int k = 0; k < S; ++k) s = winograd_term(s, L::c(j, k), t[i][k]);  // (L in) L^T
      out[i][j] = s;
    }
}

template <int M>
struct WinogradBT {
  __host__ __device__ static constexpr float c(int i, int k) { return Winograd<M>::bt(i, k); }
};
template <int M>
struct WinogradG {
  __host__ __device__ static constexpr float c(int i, int k) { return Winograd<M>::g(i, k); }
};
template <int M>
struct WinogradAT {
  __host__ __device__ static constexpr float c(int i, int k) { return Winograd<M>::at(i, k); }
};

// V = B^T d B for one alpha x alpha tile d.
template <int M>
__device__ __forceinline__ void winograd_input_transform(const float (&d)[M + 2][M + 2], float (&v)[M + 2][M + 2]) {
  winograd_sandwich<M + 2, M + 2, WinogradBT<M>>(d, v);
}

// U = G g G^T for one 3x3 filter g.
template <int M>
__device__ __forceinline__ void winograd_filter_transform(const float (&g)[3][3], float (&u)[M + 2][M + 2]) {
  winograd_sandwich<M + 2, 3, WinogradG<M>>(g, u);
}

// Y = A^T M A for one alpha x alpha tile of sums.
template <int M>
__device__ __forceinline__ void winograd_output_transform(const float (&mm)[M + 2][M + 2], float (&y)[M][M]) {
  winograd_sandwich<M, M + 2, WinogradAT<M>>(mm, y);
}

}  // namespace VK_KERNEL_NS
}  // namespace vk
