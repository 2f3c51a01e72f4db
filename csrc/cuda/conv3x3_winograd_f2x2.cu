// conv3x3 (algorithm "winograd_f2x2") for CUDA tensors.
#include "../common/backends.h"
#include "../common/conv3x3_winograd_dispatch.h"
#include "launch.cuh"

void vk::cuda::conv3x3_winograd_f2x2(const Conv3x3Args& args) {
  conv3x3_winograd_dispatch<2>(args, Launcher{static_cast<cudaStream_t>(args.stream)});
}
