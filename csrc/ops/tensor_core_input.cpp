// torch.ops.vggkern._tensor_core_input(Tensor x) -> Tensor: x as conv3x3's tensor-core
// algorithm ("implicit_gemm") reads it: x (N, C, H, W) of dtype float32/float16/bfloat16,
// any strides -> (N, Cp, H, W) channels_last, Cp = C rounded up to a multiple of 8
// (channels C..Cp-1 zero), same dtype and values. conv3x3 makes it per call where x is
// not already so (one launch of kernels/tensor_core_input.cuh); the op, always a new
// tensor, is there for the tests and the benchmarks' "layout" rows.
#include <torch/library.h>

#include "../common/backends.h"
#include "../common/op_support.h"
#include "tensor_core_layout.h"

namespace vk {

at::Tensor tensor_core_input_layout(const at::Tensor& x, const char* op) {
  const DType dtype = check_activation(x, op);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), Cp = tensor_core_channels(C);
  at::Tensor out = at::empty({N, Cp, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (out.numel() == 0) return out;
  poison_output(out);
  TensorCoreInputArgs args{x.const_data_ptr(), out.data_ptr(), dtype, N, C, H, W, Cp,
                           {x.stride(0), x.stride(1), x.stride(2), x.stride(3)}, nullptr};
  launch_on_device(x, args, VK_CUDA_LAUNCHER(cuda::tensor_core_input), &emu::tensor_core_input, op);
  return out;
}

namespace {

at::Tensor tensor_core_input(const at::Tensor& x) { return tensor_core_input_layout(x, "vggkern._tensor_core_input"); }

}  // namespace
}  // namespace vk

TORCH_LIBRARY_IMPL(vggkern, CPU, m) { m.impl("_tensor_core_input", &vk::tensor_core_input); }
TORCH_LIBRARY_IMPL(vggkern, CUDA, m) { m.impl("_tensor_core_input", &vk::tensor_core_input); }
