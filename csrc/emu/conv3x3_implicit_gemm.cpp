// conv3x3 (algorithm "implicit_gemm") for CPU tensors: the tensor-core kernel's source
// run by the SIMT emulator (mma.sync, ldmatrix and cp.async emulated per the PTX ISA).
#include "../common/backends.h"
#include "../common/conv3x3_implicit_gemm_dispatch.h"
#include "launch.h"

void vk::emu::conv3x3_implicit_gemm(const Conv3x3Args& args) { conv3x3_implicit_gemm_dispatch(args, Launcher{}); }
