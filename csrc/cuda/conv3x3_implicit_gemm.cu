// conv3x3 (algorithm "implicit_gemm") for CUDA tensors: mma.sync on tensor cores (sm_80+).
#include "../common/backends.h"
#include "../common/conv3x3_implicit_gemm_dispatch.h"
#include "launch.cuh"

void vk::cuda::conv3x3_implicit_gemm(const Conv3x3Args& args) {
  conv3x3_implicit_gemm_dispatch(args, Launcher{static_cast<cudaStream_t>(args.stream)});
}
