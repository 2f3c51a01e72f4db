// torch.ops.vggkern.tensor_core_weight(Tensor weight) -> Tensor: the weight as conv3x3's
// tensor-core algorithm ("implicit_gemm") reads it, made once: weight (K, C, 3, 3) of
// dtype float32/float16/bfloat16, any strides -> (K, 3, 3, Cp) contiguous, Cp = C
// rounded up to a multiple of 8 (channels C..Cp-1 zero), same dtype, float32 rounded to
// TF32 (the math the tensor cores do on it). conv3x3 then uses it as it is; given a raw
// weight it makes this per call (one launch of kernels/tensor_core_weight.cuh).
#include "tensor_core_layout.h"

#include <torch/library.h>

#include "../common/backends.h"
#include "../common/op_support.h"

namespace vk {

at::Tensor tensor_core_layout(const at::Tensor& weight, const char* op) {
  const DType dtype = check_raw_weight(weight, op);
  const int64_t K = weight.size(0), C = weight.size(1), Cp = tensor_core_channels(C);
  at::Tensor out = at::empty({K, 3, 3, Cp}, weight.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  poison_output(out);
  TensorCoreWeightArgs args{weight.const_data_ptr(), out.data_ptr(), dtype, K, C, Cp,
                            {weight.stride(0), weight.stride(1), weight.stride(2), weight.stride(3)},
                            dtype == DType::float32, nullptr};
  launch_on_device(weight, args, VK_CUDA_LAUNCHER(cuda::tensor_core_weight), &emu::tensor_core_weight, op);
  return out;
}

namespace {

at::Tensor tensor_core_weight(const at::Tensor& weight) {
  return tensor_core_layout(weight, "vggkern.tensor_core_weight");
}

}  // namespace
}  // namespace vk

TORCH_LIBRARY_IMPL(vggkern, CPU, m) { m.impl("tensor_core_weight", &vk::tensor_core_weight); }
TORCH_LIBRARY_IMPL(vggkern, CUDA, m) { m.impl("tensor_core_weight", &vk::tensor_core_weight); }
