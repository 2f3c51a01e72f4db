// winograd_weight (the filter transform U = G g G^T) for CUDA tensors.
#include "../common/backends.h"
#include "../common/conv3x3_winograd_dispatch.h"
#include "launch.cuh"

void vk::cuda::winograd_weight(const WinogradWeightArgs& args) {
  winograd_weight_dispatch(args, Launcher{static_cast<cudaStream_t>(args.stream)});
}
