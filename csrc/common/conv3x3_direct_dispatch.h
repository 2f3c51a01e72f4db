// conv3x3_direct's launch: the kernel variant (element type, index type), its
// parameters (strides of the layout) and its geometry. Compiled into both backends,
// which pass their own Launcher (cuda::Launcher or emu::Launcher), so the GPU and the
// emulator run the same choice.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <stdexcept>

#include "../kernels/conv3x3_direct.cuh"
#include "args.h"
#include "conv3x3_strides.h"
#include "dtype_dispatch.h"
#include "launch_geometry.h"

namespace vk {

struct Conv3x3DirectShape {
  int64_t tiles_h, tiles_w, k_groups, blocks;
};

inline Conv3x3DirectShape conv3x3_direct_shape(int64_t N, int64_t H, int64_t W, int64_t K) {
  using L = VK_KERNEL_NS::Conv3x3DirectTiling;
  Conv3x3DirectShape s;
  s.tiles_h = (H + L::kTileH - 1) / L::kTileH;
  s.tiles_w = (W + L::kTileW - 1) / L::kTileW;
  s.k_groups = (K + L::kBlockK - 1) / L::kBlockK;
  s.blocks = N * s.tiles_h * s.tiles_w * s.k_groups;
  return s;
}

// The largest grid.x: every block of the launch is numbered in blockIdx.x.
constexpr int64_t kConv3x3DirectMaxBlocks = (int64_t(1) << 31) - 1;

inline LaunchGeometry conv3x3_direct_geometry(const Conv3x3DirectShape& s) {
  using L = VK_KERNEL_NS::Conv3x3DirectTiling;
  LaunchGeometry g;
  g.block.x = L::kThreads;
  g.grid.x = static_cast<unsigned>(s.blocks);
  g.smem_bytes = L::kSmemBytes;
  return g;
}

template <class T, class Index, class Launcher>
void conv3x3_direct_run(const Conv3x3Args& a, const Launcher& launch) {
  using namespace VK_KERNEL_NS;
  using L = Conv3x3DirectTiling;
  const Conv3x3DirectShape s = conv3x3_direct_shape(a.N, a.H, a.W, a.K);
  if (s.blocks > kConv3x3DirectMaxBlocks) throw std::invalid_argument("vggkern.conv3x3: too many blocks for one launch");
  Conv3x3DirectParams<Index> p;
  p.N = a.N, p.C = a.C, p.H = a.H, p.W = a.W, p.K = a.K;
  p.tiles_h = s.tiles_h, p.tiles_w = s.tiles_w, p.k_groups = s.k_groups;
  set_conv3x3_strides(p, a);
  p.relu = a.relu, p.pool = a.pool;
  const int element = dtype_size(a.dtype);
  if (a.layout == Layout::nhwc && a.K % L::kThreadK == 0 && aligned_to(a.y, 16))
    p.store = kDirectStoreChannels;
  else if (a.layout == Layout::nchw && !a.pool && a.W % 2 == 0 && aligned_to(a.y, 2 * element))
    p.store = kDirectStoreColumnPairs;
  else
    p.store = kDirectStoreScalars;
  launch("conv3x3_direct_kernel", conv3x3_direct_kernel<T, Index>, conv3x3_direct_geometry(s),
         static_cast<const T*>(a.x), static_cast<const T*>(a.weight), static_cast<const T*>(a.bias),
         static_cast<T*>(a.y), p);
}

template <class T, class Launcher>
void conv3x3_direct_typed(const Conv3x3Args& a, const Launcher& launch) {
  // Every offset the kernel forms is below the numel of x, weight or y.
  const int64_t y_numel = a.pool ? a.N * a.K * (a.H / 2) * (a.W / 2) : a.N * a.K * a.H * a.W;
  const int64_t limit = int64_t(1) << 31;
  if (!force_int64_index() && a.N * a.C * a.H * a.W < limit && a.K * a.C * 9 < limit && y_numel < limit) {
    conv3x3_direct_run<T, int32_t>(a, launch);
  } else {
    conv3x3_direct_run<T, int64_t>(a, launch);
  }
}

template <class Launcher>
void conv3x3_direct_dispatch(const Conv3x3Args& a, const Launcher& launch) {
  dispatch_dtype(a.dtype, [&](auto tag) { conv3x3_direct_typed<decltype(tag)>(a, launch); });
}

}  // namespace vk
