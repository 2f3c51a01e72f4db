// conv3x3 (algorithms "winograd_f2x2", "winograd_f4x4") and winograd_weight for CPU
// tensors: the CUDA kernels' source run by the SIMT emulator.
#include "../common/backends.h"
#include "../common/conv3x3_winograd_dispatch.h"
#include "launch.h"

void vk::emu::conv3x3_winograd_f2x2(const Conv3x3Args& args) { conv3x3_winograd_dispatch<2>(args, Launcher{}); }
void vk::emu::conv3x3_winograd_f4x4(const Conv3x3Args& args) { conv3x3_winograd_dispatch<4>(args, Launcher{}); }
void vk::emu::winograd_weight(const WinogradWeightArgs& args) { winograd_weight_dispatch(args, Launcher{}); }

namespace {
template <int M>
void winograd_matrices_m(double* b, double* g, double* a) {
  using W = vk::VK_KERNEL_NS::Winograd<M>;
  constexpr int n = M + 2;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) b[i * n + j] = W::bt(j, i);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < 3; ++j) g[i * 3 + j] = W::g(i, j);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < M; ++j) a[i * M + j] = W::at(j, i);
}
}  // namespace

void vk::emu::winograd_matrices(int tile, double* b, double* g, double* a) {
  if (tile == 2)
    winograd_matrices_m<2>(b, g, a);
  else if (tile == 4)
    winograd_matrices_m<4>(b, g, a);
  else
    throw std::invalid_argument("vggkern: Winograd tile must be 2 or 4");
}
