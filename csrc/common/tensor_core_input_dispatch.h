// tensor_core_input's launch (kernels/tensor_core_input.cuh): lanes per pixel (U), index
// type and geometry, per dtype. Compiled into both backends.
#pragma once

#include <cstdint>
#include <stdexcept>

#include "../kernels/tensor_core_input.cuh"
#include "args.h"
#include "dtype_dispatch.h"
#include "launch_geometry.h"

namespace vk {

template <class T, class Index, class Launcher>
void tensor_core_input_run(const TensorCoreInputArgs& a, const Launcher& launch) {
  using namespace VK_KERNEL_NS;
  const auto I = [](int64_t v) { return static_cast<Index>(v); };  // int32: the dispatch checked the offsets fit
  const TensorCoreInputParams<Index> p{I(a.N),         I(a.C),         I(a.H),         I(a.W),        I(a.Cp),
                                       I(a.stride[0]), I(a.stride[1]), I(a.stride[2]), I(a.stride[3])};
  const int64_t chunks = a.Cp * static_cast<int64_t>(sizeof(T)) / 16;  // 16-byte chunks per pixel
  const int U = chunks % 2 == 0 ? 2 : 1;  // lanes per pixel (float32: always 2, Cp being a multiple of 8)
  const int64_t pixels = a.N * a.H * a.W, per_warp = 32 / U;
  const int64_t items = (pixels + per_warp - 1) / per_warp * (chunks / U) * 32;
  const LaunchGeometry g = grid_stride_geometry(items);
  if (U == 2)
    launch("tensor_core_input_kernel", tensor_core_input_kernel<T, 2, Index>, g, static_cast<const T*>(a.x),
           static_cast<T*>(a.out), p);
  else if constexpr (sizeof(T) == 2)
    launch("tensor_core_input_kernel", tensor_core_input_kernel<T, 1, Index>, g, static_cast<const T*>(a.x),
           static_cast<T*>(a.out), p);
}

template <class Launcher>
void tensor_core_input_dispatch(const TensorCoreInputArgs& a, const Launcher& launch) {
  if (a.Cp < a.C || a.Cp % 8 != 0) throw std::logic_error("vggkern: tensor_core_input needs Cp >= C, a multiple of 8");
  if (!aligned_to(a.out, 16)) throw std::logic_error("vggkern: tensor_core_input writes 16-byte vectors");
  // Offsets: x's reach (sum of (size - 1) * stride) and out's numel; 32-bit when both fit.
  const int64_t reach = (a.N - 1) * a.stride[0] + (a.C - 1) * a.stride[1] + (a.H - 1) * a.stride[2] +
                        (a.W - 1) * a.stride[3];
  const int64_t limit = int64_t(1) << 31;
  const bool fits32 = !force_int64_index() && reach < limit && a.N * a.H * a.W * a.Cp < limit;
  dispatch_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (fits32)
      tensor_core_input_run<T, int32_t>(a, launch);
    else
      tensor_core_input_run<T, int64_t>(a, launch);
  });
}

}  // namespace vk
