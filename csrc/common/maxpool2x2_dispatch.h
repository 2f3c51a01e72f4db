// maxpool2x2's launch: which kernel variant runs (layout, vector width, index type)
// and its geometry. Compiled into both backends, which pass their own Launcher
// (cuda::Launcher or emu::Launcher), so the GPU and the emulator run the same choice.
#pragma once

#include <cstdint>

#include "../kernels/maxpool2x2.cuh"
#include "args.h"
#include "dtype_dispatch.h"
#include "launch_geometry.h"

namespace vk {

template <class T, class Index, class Launcher>
void maxpool2x2_run(const Maxpool2x2Args& a, const Launcher& launch) {
  using namespace VK_KERNEL_NS;
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const Index N = a.N, C = a.C, H = a.H, W = a.W, Ho = H / 2, Wo = W / 2;
  constexpr int kSize = sizeof(T);
  if (a.layout == Layout::nchw) {
    const int64_t rows = a.N * a.C * (a.H / 2);
    // OUT outputs per thread from 2*OUT-element row loads of 16 or 8 bytes, else scalar.
    constexpr int kOut16 = 8 / kSize, kOut8 = 4 / kSize;
    if (W % (2 * kOut16) == 0 && aligned_to(x, 16) && aligned_to(y, 8)) {
      launch("maxpool2x2_nchw_kernel", maxpool2x2_nchw_kernel<T, kOut16, true, Index>,
             grid_stride_geometry(rows * (Wo / kOut16)), x, y, N * C, H, W, Ho, Wo);
    } else if (W % (2 * kOut8) == 0 && aligned_to(x, 8) && aligned_to(y, 4)) {
      launch("maxpool2x2_nchw_kernel", maxpool2x2_nchw_kernel<T, kOut8, true, Index>,
             grid_stride_geometry(rows * (Wo / kOut8)), x, y, N * C, H, W, Ho, Wo);
    } else {
      launch("maxpool2x2_nchw_kernel", maxpool2x2_nchw_kernel<T, 1, false, Index>, grid_stride_geometry(rows * Wo), x,
             y, N * C, H, W, Ho, Wo);
    }
  } else {
    const int64_t pixels = a.N * (a.H / 2) * (a.W / 2);
    // V channels per thread in 16- or 8-byte accesses, else scalar.
    constexpr int kV16 = 16 / kSize, kV8 = 8 / kSize;
    if (C % kV16 == 0 && aligned_to(x, 16) && aligned_to(y, 16)) {
      launch("maxpool2x2_nhwc_kernel", maxpool2x2_nhwc_kernel<T, kV16, true, Index>,
             grid_stride_geometry(pixels * (a.C / kV16)), x, y, N, C, H, W, Ho, Wo);
    } else if (C % kV8 == 0 && aligned_to(x, 8) && aligned_to(y, 8)) {
      launch("maxpool2x2_nhwc_kernel", maxpool2x2_nhwc_kernel<T, kV8, true, Index>,
             grid_stride_geometry(pixels * (a.C / kV8)), x, y, N, C, H, W, Ho, Wo);
    } else {
      launch("maxpool2x2_nhwc_kernel", maxpool2x2_nhwc_kernel<T, 1, false, Index>,
             grid_stride_geometry(pixels * a.C), x, y, N, C, H, W, Ho, Wo);
    }
  }
}

template <class T, class Launcher>
void maxpool2x2_typed(const Maxpool2x2Args& a, const Launcher& launch) {
  // Every offset is below numel(x): 32-bit arithmetic when that fits.
  if (!force_int64_index() && a.N * a.C * a.H * a.W < (int64_t(1) << 31)) {
    maxpool2x2_run<T, int32_t>(a, launch);
  } else {
    maxpool2x2_run<T, int64_t>(a, launch);
  }
}

template <class Launcher>
void maxpool2x2_dispatch(const Maxpool2x2Args& a, const Launcher& launch) {
  dispatch_dtype(a.dtype, [&](auto tag) { maxpool2x2_typed<decltype(tag)>(a, launch); });
}

}  // namespace vk
