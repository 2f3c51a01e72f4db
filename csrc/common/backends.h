// The launchers each backend provides: `cuda` (csrc/cuda, GPU tensors) and `emu`
// (csrc/emu, CPU tensors run through the SIMT emulator). Same signature, same args.
#pragma once

#include "args.h"

namespace vk {
namespace cuda {
void maxpool2x2(const Maxpool2x2Args& args);
void conv3x3_direct(const Conv3x3Args& args);
void conv3x3_implicit_gemm(const Conv3x3Args& args);
}  // namespace cuda
namespace emu {
void maxpool2x2(const Maxpool2x2Args& args);
void conv3x3_direct(const Conv3x3Args& args);
void conv3x3_implicit_gemm(const Conv3x3Args& args);
int worker_count();  // OS threads an emulated launch uses (VGGKERN_EMU_THREADS)
}  // namespace emu
}  // namespace vk
