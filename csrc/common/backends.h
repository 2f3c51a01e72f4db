// The launchers each backend provides: `cuda` (csrc/cuda, GPU tensors) and `emu`
// (csrc/emu, CPU tensors run through the SIMT emulator). Same signature, same args.
#pragma once

#include "args.h"

namespace vk {
namespace cuda {
void maxpool2x2(const Maxpool2x2Args& args);
void conv3x3_direct(const Conv3x3Args& args);
void conv3x3_implicit_gemm(const Conv3x3Args& args);
void conv3x3_winograd_f2x2(const Conv3x3Args& args);
void conv3x3_winograd_f4x4(const Conv3x3Args& args);
void winograd_weight(const WinogradWeightArgs& args);
void tensor_core_weight(const TensorCoreWeightArgs& args);
void tensor_core_input(const TensorCoreInputArgs& args);
}  // namespace cuda
namespace emu {
void maxpool2x2(const Maxpool2x2Args& args);
void conv3x3_direct(const Conv3x3Args& args);
void conv3x3_implicit_gemm(const Conv3x3Args& args);
void conv3x3_winograd_f2x2(const Conv3x3Args& args);
void conv3x3_winograd_f4x4(const Conv3x3Args& args);
void winograd_weight(const WinogradWeightArgs& args);
void tensor_core_weight(const TensorCoreWeightArgs& args);
void tensor_core_input(const TensorCoreInputArgs& args);
// The Winograd transforms the kernels use (csrc/kernels/winograd_transforms.cuh), as
// float64 row-major: b (alpha x alpha, V = B^T d B), g (alpha x 3), a (alpha x tile).
void winograd_matrices(int tile, double* b, double* g, double* a);
int worker_count();  // OS threads an emulated launch uses (VGGKERN_EMU_THREADS)
}  // namespace emu
}  // namespace vk
