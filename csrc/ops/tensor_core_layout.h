// The operands as the tensor-core algorithms read them. The weight
// (csrc/ops/tensor_core_weight.cpp): conv3x3's "implicit_gemm" lays a raw weight out per
// call with it, or takes one laid out once by vggkern.tensor_core_weight. x
// (csrc/ops/tensor_core_input.cpp): laid out per call where it is not already so.
#pragma once

#include <ATen/ATen.h>

namespace vk {

// C padded to a multiple of 8 (the kernels' 16-byte chunks of channels).
inline int64_t tensor_core_channels(int64_t C) { return (C + 7) / 8 * 8; }

// Whether weight is in the laid-out form (K, 3, 3, Cp), not a raw (K, C, 3, 3): the two
// never share a shape, as a raw weight's last dimension is 3 and Cp is a multiple of 8.
// (Only a shape: its dtype, C and strides are checked where it is used.)
inline bool is_tensor_core_layout(const at::Tensor& weight) {
  return weight.dim() == 4 && weight.size(1) == 3 && weight.size(2) == 3 && weight.size(3) != 3;
}

// weight (K, C, 3, 3) of any strides -> (K, 3, 3, Cp) contiguous in weight's dtype, on
// its device, channels C..Cp-1 zero, float32 rounded to TF32 (cvt.rna: nearest, ties
// away from zero). Checks weight, naming `op`.
at::Tensor tensor_core_layout(const at::Tensor& weight, const char* op);

// x (N, C, H, W) of any strides -> (N, Cp, H, W) channels_last (dense, 16-byte aligned)
// in x's dtype, on its device, channels C..Cp-1 zero, values as they are: one launch
// (kernels/tensor_core_input.cuh). Checks x, naming `op`.
at::Tensor tensor_core_input_layout(const at::Tensor& x, const char* op);

}  // namespace vk
