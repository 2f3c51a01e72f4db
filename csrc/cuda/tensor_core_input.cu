// tensor_core_input (the tensor-core algorithms' layout of x) for CUDA tensors.
#include "../common/backends.h"
#include "../common/tensor_core_input_dispatch.h"
#include "launch.cuh"

void vk::cuda::tensor_core_input(const TensorCoreInputArgs& args) {
  tensor_core_input_dispatch(args, Launcher{static_cast<cudaStream_t>(args.stream)});
}
