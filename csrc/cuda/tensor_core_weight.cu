// tensor_core_weight (the tensor-core algorithms' weight layout) for CUDA tensors.
#include "../common/backends.h"
#include "../common/tensor_core_weight_dispatch.h"
#include "launch.cuh"

void vk::cuda::tensor_core_weight(const TensorCoreWeightArgs& args) {
  tensor_core_weight_dispatch(args, Launcher{static_cast<cudaStream_t>(args.stream)});
}
