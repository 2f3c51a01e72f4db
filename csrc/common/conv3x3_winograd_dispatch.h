// conv3x3_winograd_f2x2 / _f4x4 and winograd_weight launches: the kernel variant (tile
// size, element type, index type), its parameters and its geometry. Compiled into both
// backends, which pass their own Launcher (cuda::Launcher or emu::Launcher), so the GPU
// and the emulator run the same choice.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <stdexcept>

#include "../kernels/conv3x3_winograd.cuh"
#include "args.h"
#include "conv3x3_strides.h"
#include "dtype_dispatch.h"
#include "launch_geometry.h"

namespace vk {

struct Conv3x3WinogradShape {
  int64_t tiles_h, tiles_w, tiles, k_groups, blocks;
};

template <int M>
Conv3x3WinogradShape conv3x3_winograd_shape(int64_t N, int64_t H, int64_t W, int64_t K) {
  using L = VK_KERNEL_NS::Conv3x3WinogradLayout<M>;
  Conv3x3WinogradShape s;
  s.tiles_h = (H + M - 1) / M;
  s.tiles_w = (W + M - 1) / M;
  s.tiles = N * s.tiles_h * s.tiles_w;
  s.k_groups = (K + L::kBK - 1) / L::kBK;
  s.blocks = (s.tiles + L::kBT - 1) / L::kBT * s.k_groups;
  return s;
}

template <int M>
LaunchGeometry conv3x3_winograd_geometry(const Conv3x3WinogradShape& s) {
  using L = VK_KERNEL_NS::Conv3x3WinogradLayout<M>;
  LaunchGeometry g;
  g.block.x = L::kThreads;
  g.grid.x = static_cast<unsigned>(s.blocks);
  g.smem_bytes = L::kSmemBytes;
  return g;
}

template <int M, class T, class Index, class Launcher>
void conv3x3_winograd_run(const Conv3x3Args& a, const Launcher& launch) {
  using namespace VK_KERNEL_NS;
  const Conv3x3WinogradShape s = conv3x3_winograd_shape<M>(a.N, a.H, a.W, a.K);
  if (s.blocks > (int64_t(1) << 31) - 1) throw std::invalid_argument("vggkern.conv3x3: too many blocks for one launch");
  Conv3x3WinogradParams<Index> p;
  p.N = a.N, p.C = a.C, p.H = a.H, p.W = a.W, p.K = a.K;
  p.tiles_h = s.tiles_h, p.tiles_w = s.tiles_w, p.tiles = s.tiles, p.k_groups = s.k_groups;
  set_conv3x3_strides(p, a);
  p.relu = a.relu, p.pool = a.pool;
  const int row = a.pool ? M / 2 : M;  // elements of a tile's output row
  p.store_rows = a.layout == Layout::nchw && row > 1 && a.W % M == 0 && aligned_to(a.y, row * dtype_size(a.dtype));
  launch(M == 2 ? "conv3x3_winograd_f2x2_kernel" : "conv3x3_winograd_f4x4_kernel", conv3x3_winograd_kernel<M, T, Index>,
         conv3x3_winograd_geometry<M>(s), static_cast<const T*>(a.x), a.winograd_u, static_cast<const T*>(a.bias),
         static_cast<T*>(a.y), p);
}

template <int M, class T, class Launcher>
void conv3x3_winograd_typed(const Conv3x3Args& a, const Launcher& launch) {
  // Every offset the kernel forms is below the numel of x, U or y (tile indices below
  // N * H * W).
  const int64_t y_numel = a.pool ? a.N * a.K * (a.H / 2) * (a.W / 2) : a.N * a.K * a.H * a.W;
  const int64_t limit = int64_t(1) << 31;
  if (!force_int64_index() && a.N * a.C * a.H * a.W < limit && (M + 2) * (M + 2) * a.K * a.C < limit && y_numel < limit &&
      a.N * (a.H + M) * (a.W + M) < limit) {
    conv3x3_winograd_run<M, T, int32_t>(a, launch);
  } else {
    conv3x3_winograd_run<M, T, int64_t>(a, launch);
  }
}

// a.winograd_u must hold U = winograd_weight(weight, M): fp32 (P, C, K).
template <int M, class Launcher>
void conv3x3_winograd_dispatch(const Conv3x3Args& a, const Launcher& launch) {
  if (a.winograd_u == nullptr) throw std::invalid_argument("vggkern.conv3x3: winograd algorithm without U");
  dispatch_dtype(a.dtype, [&](auto tag) { conv3x3_winograd_typed<M, decltype(tag)>(a, launch); });
}

// winograd_weight: one thread per (c, k).
template <class Launcher>
void winograd_weight_dispatch(const WinogradWeightArgs& a, const Launcher& launch) {
  using namespace VK_KERNEL_NS;
  LaunchGeometry g;
  g.block.x = 256;
  const int64_t blocks = (a.K * a.C + 255) / 256;
  if (blocks > (int64_t(1) << 31) - 1) throw std::invalid_argument("vggkern.winograd_weight: weight too large");
  g.grid.x = static_cast<unsigned>(blocks);
  dispatch_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (a.tile == 2)
      launch("winograd_filter_transform_f2x2_kernel", winograd_filter_transform_kernel<2, T>, g,
             static_cast<const T*>(a.weight), a.u, a.K, a.C);
    else
      launch("winograd_filter_transform_f4x4_kernel", winograd_filter_transform_kernel<4, T>, g,
             static_cast<const T*>(a.weight), a.u, a.K, a.C);
  });
}

}  // namespace vk
