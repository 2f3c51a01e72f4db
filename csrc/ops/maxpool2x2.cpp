// torch.ops.vggkern.maxpool2x2(Tensor x) -> Tensor: checks, output allocation, launch.
#include <torch/library.h>

#include "../common/backends.h"
#include "../common/op_support.h"

namespace vk {
namespace {

at::Tensor maxpool2x2(const at::Tensor& x) {
  constexpr const char* op = "vggkern.maxpool2x2";
  const DType dtype = check_maxpool2x2_input(x, op);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);

  const at::MemoryFormat format = x.suggest_memory_format();
  const at::Tensor xc = x.contiguous(format);
  at::Tensor y = at::empty({N, C, H / 2, W / 2}, x.options().memory_format(format));
  if (y.numel() == 0) return y;
  poison_output(y);

  Maxpool2x2Args args{xc.const_data_ptr(), y.data_ptr(), dtype, layout_of(format), N, C, H, W, nullptr};
  launch_on_device(x, args, VK_CUDA_LAUNCHER(cuda::maxpool2x2), &emu::maxpool2x2, op);
  return y;
}

}  // namespace
}  // namespace vk

TORCH_LIBRARY_IMPL(vggkern, CPU, m) { m.impl("maxpool2x2", &vk::maxpool2x2); }
TORCH_LIBRARY_IMPL(vggkern, CUDA, m) { m.impl("maxpool2x2", &vk::maxpool2x2); }
