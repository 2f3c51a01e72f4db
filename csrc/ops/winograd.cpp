// torch.ops.vggkern.winograd_weight(Tensor weight, int tile) -> Tensor: the Winograd
// filter transform U = G g G^T of every (k, c) filter, for conv3x3's "winograd_f2x2"
// (tile=2) and "winograd_f4x4" (tile=4) algorithms. weight (K, C, 3, 3) of dtype
// float32/float16/bfloat16 -> U of shape (alpha^2, C, K) = (16 or 36, C, K), float32
// (whatever weight's dtype: the kernels compute in fp32, and rounding U to fp16/bf16
// would add an error as large as the output's own rounding), contiguous, on weight's
// device.
// torch.ops.vggkern._winograd_matrices(int tile) -> (B, G, A): the transforms the
// kernels use, float64 CPU tensors, so tests check the kernels' own constants.
#include "winograd.h"

#include <torch/library.h>

#include <tuple>

#include "../common/backends.h"
#include "../common/op_support.h"

namespace vk {

at::Tensor winograd_weight_transform(const at::Tensor& weight, int64_t tile, const char* op) {
  TORCH_CHECK_VALUE(tile == 2 || tile == 4, op, ": expected tile 2 (F(2x2,3x3)) or 4 (F(4x4,3x3)), got ", tile);
  const DType dtype = check_raw_weight(weight, op);
  const int64_t K = weight.size(0), C = weight.size(1), alpha = tile + 2;
  const at::Tensor wc = weight.contiguous();
  at::Tensor u = at::empty({alpha * alpha, C, K}, weight.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous));
  if (u.numel() == 0) return u;
  poison_output(u);
  WinogradWeightArgs args{wc.const_data_ptr(), u.data_ptr<float>(), dtype, K, C, static_cast<int>(tile), nullptr};
  launch_on_device(weight, args, VK_CUDA_LAUNCHER(cuda::winograd_weight), &emu::winograd_weight, op);
  return u;
}

namespace {

at::Tensor winograd_weight(const at::Tensor& weight, int64_t tile) {
  return winograd_weight_transform(weight, tile, "vggkern.winograd_weight");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> winograd_matrices(int64_t tile) {
  TORCH_CHECK_VALUE(tile == 2 || tile == 4, "vggkern._winograd_matrices: expected tile 2 or 4, got ", tile);
  const int64_t alpha = tile + 2;
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor b = at::empty({alpha, alpha}, f64), g = at::empty({alpha, 3}, f64), a = at::empty({alpha, tile}, f64);
  emu::winograd_matrices(static_cast<int>(tile), b.data_ptr<double>(), g.data_ptr<double>(), a.data_ptr<double>());
  return {b, g, a};
}

}  // namespace
}  // namespace vk

TORCH_LIBRARY_IMPL(vggkern, CPU, m) { m.impl("winograd_weight", &vk::winograd_weight); }
TORCH_LIBRARY_IMPL(vggkern, CUDA, m) { m.impl("winograd_weight", &vk::winograd_weight); }
TORCH_LIBRARY_IMPL(vggkern, CompositeExplicitAutograd, m) { m.impl("_winograd_matrices", &vk::winograd_matrices); }
