// maxpool2x2 for CUDA tensors.
#include "../common/backends.h"
#include "../common/maxpool2x2_dispatch.h"
#include "launch.cuh"

void vk::cuda::maxpool2x2(const Maxpool2x2Args& args) {
  maxpool2x2_dispatch(args, Launcher{static_cast<cudaStream_t>(args.stream)});
}
