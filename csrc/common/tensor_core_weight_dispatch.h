// tensor_core_weight's launch (kernels/tensor_core_weight.cuh): one thread per output
// element, 256 per block, per dtype. Compiled into both backends.
#pragma once

#include <cstdint>
#include <stdexcept>

#include "../kernels/tensor_core_weight.cuh"
#include "args.h"
#include "dtype_dispatch.h"
#include "launch_geometry.h"

namespace vk {

template <class Launcher>
void tensor_core_weight_dispatch(const TensorCoreWeightArgs& a, const Launcher& launch) {
  using namespace VK_KERNEL_NS;
  if (a.round_tf32 && a.dtype != DType::float32)
    throw std::logic_error("vggkern: tensor_core_weight rounds float32 to TF32 only");
  if (a.Cp < a.C || a.Cp % 8 != 0) throw std::logic_error("vggkern: tensor_core_weight needs Cp >= C, a multiple of 8");
  const int64_t blocks = (a.K * 9 * a.Cp + 255) / 256;
  if (blocks > (int64_t(1) << 31) - 1) throw std::invalid_argument("vggkern.conv3x3: weight too large");
  LaunchGeometry g;
  g.block.x = 256;
  g.grid.x = static_cast<unsigned>(blocks);
  const TensorCoreWeightParams p{a.K, a.C, a.Cp, a.stride[0], a.stride[1], a.stride[2], a.stride[3], a.round_tf32};
  dispatch_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch("tensor_core_weight_kernel", tensor_core_weight_kernel<T>, g, static_cast<const T*>(a.weight),
           static_cast<T*>(a.out), p);
  });
}

}  // namespace vk
