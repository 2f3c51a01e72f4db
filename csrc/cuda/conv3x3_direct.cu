// conv3x3 (algorithm "direct") for CUDA tensors.
#include "../common/backends.h"
#include "../common/conv3x3_direct_dispatch.h"
#include "launch.cuh"

void vk::cuda::conv3x3_direct(const Conv3x3Args& args) {
  conv3x3_direct_dispatch(args, Launcher{static_cast<cudaStream_t>(args.stream)});
}
